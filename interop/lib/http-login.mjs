// A headless "user with a browser" for mcpauth serve's login and consent pages, over plain HTTP
// (Node's fetch, no dependencies): GET the authorization URL, read the login form (action,
// hidden request_id and csrf, session cookie), POST the username and password, read the consent
// form, POST decision=allow (or deny), and return the redirect the server answers with (the
// client's redirect URI with code, state and iss). Redirects are never followed automatically, so
// every hop is checked.
//
//   import { loginAndConsent } from "./http-login.mjs";
//   const location = await loginAndConsent(url, { username: "alice", password: "…" });

/** Value of `<input … name="NAME" value="…">` in the page (HTML-unescaped). */
export function hiddenField(html, name) {
  const re = new RegExp(`<input[^>]*name="${name}"[^>]*value="([^"]*)"`, "i");
  const m = html.match(re);
  if (!m) throw new Error(`the page has no ${name} field:\n${excerpt(html)}`);
  return unescapeHtml(m[1]);
}

/** The `action` of the first form in the page, resolved against `base`. */
export function formAction(html, base) {
  const m = html.match(/<form[^>]*action="([^"]*)"/i);
  if (!m) throw new Error(`the page has no form:\n${excerpt(html)}`);
  return new URL(unescapeHtml(m[1]), base).toString();
}

/** HTML character references (numeric, &quot; &lt; &gt; &amp;) back to text. */
export function unescapeHtml(s) {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(parseInt(d, 10)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

function excerpt(html) {
  const body = html.replace(/<style[\s\S]*?<\/style>/gi, "").replace(/\s+/g, " ");
  return body.length > 1500 ? body.slice(0, 1500) + "…" : body;
}

/** Keeps the cookies a server sets, like a browser would for one origin. */
export class CookieJar {
  constructor() {
    this.cookies = new Map();
  }
  take(resp) {
    for (const line of resp.headers.getSetCookie?.() ?? []) {
      const [pair] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq > 0) this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

async function request(jar, url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  const cookie = jar.header();
  if (cookie) headers.cookie = cookie;
  const resp = await fetch(url, { ...init, headers, redirect: "manual" });
  jar.take(resp);
  return resp;
}

function isRedirect(status) {
  return status >= 300 && status < 400;
}

/**
 * Opens `authorizationUrl` and plays the user until the server redirects away from itself: signs
 * in on a login page (a form with a password field), answers a consent page (a form with a
 * `decision` button), and follows redirects that stay on the server's origin (e.g. an
 * interaction step). Returns the first redirect URL that leaves the origin (the client's
 * redirect URI with code, state and iss), as a string. Throws with the page's text on anything
 * unexpected. Pass `jar` (a CookieJar) to keep the session across calls: a server that
 * remembers the session and the consent then redirects at once.
 *
 * @param {string} authorizationUrl
 * @param {{username: string, password: string, decision?: "allow"|"deny", jar?: CookieJar,
 *          log?: (msg: string) => void}} opts
 */
export async function loginAndConsent(authorizationUrl, opts) {
  const { username, password, decision = "allow", log = () => {} } = opts;
  const jar = opts.jar ?? new CookieJar();
  const origin = new URL(authorizationUrl).origin;
  let url = authorizationUrl;
  let init = {};
  let logins = 0;
  let consents = 0;
  for (let hop = 0; hop < 12; hop++) {
    log(`${init.method ?? "GET"} ${url}`);
    const resp = await request(jar, url, init);
    if (isRedirect(resp.status)) {
      const location = resp.headers.get("location");
      if (!location) throw new Error(`HTTP ${resp.status} without Location from ${url}`);
      const next = new URL(location, url);
      if (next.origin !== origin) {
        log(`redirected to ${next.href.replace(/code=[^&]+/, "code=…")}`);
        return next.href;
      }
      url = next.href;
      init = {};
      continue;
    }
    const html = await resp.text();
    if (resp.status !== 200) throw new Error(`${init.method ?? "GET"} ${url}: HTTP ${resp.status}\n${excerpt(html)}`);
    const action = formAction(html, url);
    const form = { request_id: hiddenField(html, "request_id"), csrf: hiddenField(html, "csrf") };
    if (/type="password"/i.test(html)) {
      if (++logins > 1) throw new Error(`the login was refused:\n${excerpt(html)}`);
      log(`login as ${username}`);
      Object.assign(form, { username, password });
    } else if (/name="decision"/i.test(html)) {
      if (++consents > 1) throw new Error(`the consent page came twice:\n${excerpt(html)}`);
      log(`consent: decision=${decision}`);
      form.decision = decision;
    } else {
      throw new Error(`neither a login nor a consent page at ${url}:\n${excerpt(html)}`);
    }
    url = action;
    init = {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form).toString(),
    };
  }
  throw new Error(`too many hops from ${authorizationUrl}`);
}
