// Shared by the interop harnesses (interop/rmcp.mjs, and through interop/gateway/harness.mjs
// those of interop/run-gateway): the environment their runner passes, the "  PASS  …"/
// "  FAIL  …" lines with the closing "N passed, M failed", and small JWT and MCP helpers.

/** The environment variable `name`; throws when it is unset or empty. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through its interop/run-* script)`);
  return v;
}

export const VERBOSE = process.env.MCPAUTH_VERBOSE === "1";

/** A logger for MCPAUTH_VERBOSE=1 (stderr, so the check lines stay alone on stdout). */
export const verboseLog = (label) => (m) => VERBOSE && console.error(`    [${label}] ${m}`);

/** The JSON of part `i` (0 header, 1 payload) of a compact JWS. */
export const jwtPart = (token, i) => JSON.parse(Buffer.from(token.split(".")[i], "base64url").toString("utf8"));

/** The text of a tools/call result's first content block. */
export const text = (result) => result?.content?.[0]?.text;

export const withTimeout = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer in ${ms / 1000} s`)), ms).unref())]);

/** Counts the checks, prints one line each, and ends the run with the summary line. */
export class Checks {
  constructor(tag) {
    this.tag = tag;
    this.passed = 0;
    this.failed = 0;
  }

  check(name, ok, detail = "") {
    if (ok) this.passed++;
    else this.failed++;
    console.log(`  ${ok ? "PASS" : "FAIL"}  ${this.tag} ${name}${detail ? `  (${detail})` : ""}`);
    return !!ok;
  }

  /** Runs `steps` ([label, async fn]) in order (an exception fails that step, the next ones
   * still run), prints "N passed, M failed" and exits 1 unless everything passed. */
  async run(steps) {
    for (const [label, step] of steps) {
      try {
        await step();
      } catch (e) {
        this.check(`${label}: completed without an exception`, false, e.stack ?? String(e));
      }
    }
    console.log(`${this.passed} passed, ${this.failed} failed`);
    process.exit(this.failed === 0 && this.passed > 0 ? 0 : 1);
  }
}
