//! `mcpauth serve` with upstream identity providers (SPEC F1-F8): OpenID Connect from the flags
//! or the settings, plain OAuth 2.0 (GitHub-style) from the settings, the secret kept off the
//! command line, the redirect URI in the banner, and providers-only sign-in.

use std::path::Path;
use std::process::Stdio;

use mcpauth_testkit::{GithubProvider, GithubUser, IdpUser, OidcProvider};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{self, LIMIT, mcpauth};

pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A running `mcpauth serve`, its issuer, and its start-up banner.
struct Serve {
    child: tokio::process::Child,
    issuer: String,
    banner: String,
}

/// Starts `cmd` (stdin closed) and reads its start-up banner on stderr up to the line
/// containing `until`; the rest of stderr is drained.
async fn started(mut cmd: Command, until: &str) -> (tokio::process::Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let banner = tokio::time::timeout(LIMIT, async {
        let mut banner = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains(until) {
                return banner;
            }
        }
        panic!("mcpauth did not print {until:?}: {banner}");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

/// The value of the banner line `label: value`.
fn banner_value(banner: &str, label: &str) -> String {
    let lines: Vec<String> = banner.lines().map(str::to_owned).collect();
    crate::gateway::banner_value(&lines, label)
}

/// Starts `mcpauth serve` on 127.0.0.1:0 with a SQLite database in `home` and the arguments
/// `args` adds, and reads its banner up to the line containing `until`.
async fn serve(home: &Path, args: impl FnOnce(&mut Command), until: &str) -> Serve {
    let db = format!("sqlite://{}/as.db?mode=rwc", home.display());
    let mut cmd = mcpauth(home);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--database", &db]);
    args(&mut cmd);
    let (child, banner) = started(cmd, until).await;
    Serve {
        child,
        issuer: banner_value(&banner, "issuer:"),
        banner,
    }
}

/// The redirect URI the banner says to register at the identity provider.
fn banner_callback(banner: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.split_once("redirect URI at the identity provider: "))
        .map(|(_, uri)| uri.trim().to_owned())
        .unwrap_or_else(|| panic!("no redirect URI in {banner}"))
}

/// Registers a native public client at `issuer` and sends its authorization request (PKCE
/// S256); returns the response.
async fn authorize(http: &reqwest::Client, issuer: &str) -> reqwest::Response {
    authorize_for(
        http,
        issuer,
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        &[],
    )
    .await
    .1
}

/// Registers a native public client at `issuer` and sends its authorization request with the
/// PKCE S256 `challenge` and the `extra` parameters; returns the client id and the response.
pub(crate) async fn authorize_for(
    http: &reqwest::Client,
    issuer: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> (String, reqwest::Response) {
    let reg: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({"redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none", "application_type": "native"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    let mut url = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "s")
        .extend_pairs(extra);
    (client_id, http.get(url).send().await.unwrap())
}

/// The redirect URI of the clients [`authorize_for`] registers.
pub(crate) const REDIRECT: &str = "http://127.0.0.1:5000/cb";

#[tokio::test]
async fn f1_serve_refuses_a_provider_without_an_allow_rule() {
    let home = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/as.db?mode=rwc", home.path().display());
    let out = mcpauth(home.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--database", &db])
        .args([
            "--idp-issuer",
            "https://idp.example",
            "--idp-client-id",
            "c",
        ])
        .env("MCPAUTH_IDP_CLIENT_SECRET", "s3cret-value")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--idp-allow-any"), "{stderr}");
    assert!(!stderr.contains("s3cret-value"), "{stderr}");
}

#[tokio::test]
async fn f3_serve_with_only_a_provider_sends_authorize_straight_to_it() {
    let idp = OidcProvider::start(IdpUser {
        sub: "u1".into(),
        email: "ada@example.com".into(),
        extra: json!({}),
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let secret_file = home.path().join("idp-secret");
    std::fs::write(&secret_file, format!("{}\n", idp.client_secret)).unwrap();
    let args = |c: &mut Command| {
        c.args([
            "--idp-issuer",
            &idp.issuer,
            "--idp-client-id",
            &idp.client_id,
        ])
        .arg("--idp-client-secret-file")
        .arg(&secret_file)
        .args(["--idp-allow-domain", "example.com", "--no-password-login"]);
    };
    let mut s = serve(home.path(), args, "redirect URI at the identity provider").await;
    let (issuer, callback) = (s.issuer.clone(), banner_callback(&s.banner));
    assert_eq!(callback, format!("{issuer}/idp/callback"));

    let http = no_redirects();
    let resp = authorize(&http, &issuer).await;
    assert_eq!(resp.status(), 302);
    let cookie = common::cookie(&resp);
    let start = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        start.starts_with(&format!("{issuer}/idp/start?")),
        "{start}"
    );
    let resp = http
        .get(&start)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let at_idp = resp.headers()["location"].to_str().unwrap();
    assert!(
        at_idp.starts_with(&format!("{}/authorize?", idp.issuer)),
        "{at_idp}"
    );
    let idp_url = url::Url::parse(at_idp).unwrap();
    let redirect = idp_url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(redirect, callback);
    s.child.kill().await.unwrap();
}

#[tokio::test]
async fn f1_gateway_refuses_idp_flags_with_an_external_issuer() {
    let home = tempfile::tempdir().unwrap();
    let out = mcpauth(home.path())
        .args(["gateway", "--upstream", "http://127.0.0.1:9/mcp"])
        .args(["--issuer", "https://as.example", "--bind", "127.0.0.1:0"])
        .args([
            "--idp-issuer",
            "https://idp.example",
            "--idp-client-id",
            "c",
        ])
        .args(["--idp-allow-any"])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("embedded authorization server"), "{stderr}");
}

#[tokio::test]
async fn f3_settings_file_providers_are_buttons_without_the_password_form() {
    let idp = OidcProvider::start(IdpUser {
        sub: "u1".into(),
        email: "ada@example.com".into(),
        extra: json!({}),
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let secret_file = home.path().join("idp-secret");
    std::fs::write(&secret_file, &idp.client_secret).unwrap();
    let settings = home.path().join("serve.toml");
    std::fs::write(
        &settings,
        format!(
            r#"password_login = false

[[identity_providers]]
name = "corp"
display_name = "Corp SSO"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret_file = "{secret}"
allow_claims = ["groups=staff"]

[[identity_providers]]
name = "partner"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret_file = "{secret}"
allow_any = true
"#,
            issuer = idp.issuer,
            client_id = idp.client_id,
            secret = secret_file.display(),
        ),
    )
    .unwrap();
    let mut s = serve(
        home.path(),
        |c| {
            c.arg("--settings").arg(&settings);
        },
        "password sign-in: off",
    )
    .await;
    let http = no_redirects();
    let resp = authorize(&http, &s.issuer).await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("data-idp=\"corp\""), "{html}");
    assert!(html.contains("Corp SSO"), "{html}");
    assert!(html.contains("data-idp=\"partner\""), "{html}");
    assert!(!html.contains("name=\"password\""), "{html}");
    s.child.kill().await.unwrap();
}

/// F1: the gateway's embedded server takes the provider flags; the banner names the provider
/// as `--idp-display-name` says, the redirect URI to register and where the upstream tokens'
/// key lives (F5: this process only, with --demo's in-memory database), never the secret.
#[tokio::test]
async fn f1_gateway_embeds_the_provider_sign_in_and_prints_the_redirect_uri() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = mcpauth(home.path());
    cmd.args(["gateway", "--demo", "--bind", "127.0.0.1:0"])
        .args([
            "--idp-issuer",
            "https://idp.example",
            "--idp-client-id",
            "c",
        ])
        .args(["--idp-display-name", "Corp SSO"])
        .args(["--idp-allow-email", "ada@example.com"])
        .env("MCPAUTH_IDP_CLIENT_SECRET", "s3cret-value");
    let (mut child, banner) = started(cmd, "Press Ctrl-C").await;
    let callback = banner_callback(&banner);
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    assert!(callback.ends_with("/idp/callback"), "{callback}");
    assert!(
        banner.contains("sign-in via: Corp SSO (https://idp.example)"),
        "{banner}"
    );
    assert!(
        banner.contains("upstream tokens sealed with a key of this process only"),
        "{banner}"
    );
    assert!(!banner.contains("s3cret-value"), "{banner}");
    child.kill().await.unwrap();
}

/// A settings file in `home` with the `[[identity_providers]]` of a GitHub-style OAuth 2.0
/// provider (the testkit's), its secret in a file.
fn github_settings(home: &Path, gh: &GithubProvider) -> std::path::PathBuf {
    let secret_file = home.join("github-secret");
    std::fs::write(&secret_file, &gh.client_secret).unwrap();
    let settings = home.join("serve.toml");
    std::fs::write(
        &settings,
        format!(
            r#"password_login = false

[[identity_providers]]
name = "github"
kind = "oauth2"
display_name = "GitHub"
client_id = "{client_id}"
client_secret_file = "{secret}"
authorization_endpoint = "{authorize}"
token_endpoint = "{token}"
userinfo_endpoint = "{user}"
emails_endpoint = "{emails}"
name_field = "login"
scopes = ["read:user", "user:email"]
allow_claims = ["login=octocat"]
"#,
            client_id = gh.client_id,
            secret = secret_file.display(),
            authorize = gh.authorization_endpoint(),
            token = gh.token_endpoint(),
            user = gh.user_endpoint(),
            emails = gh.emails_endpoint(),
        ),
    )
    .unwrap();
    settings
}

async fn github() -> GithubProvider {
    GithubProvider::start(GithubUser {
        id: 583231,
        login: "octocat".into(),
        email: "octocat@example.com".into(),
    })
    .await
}

/// F1-F7 through the binary: a `kind = "oauth2"` provider from the settings file; the banner
/// names it and the callback URI to register; a browser goes from `/authorize` straight to it
/// and comes back to our consent page as `github:ID`.
#[tokio::test]
async fn f1_serve_settings_oauth2_provider_signs_in() {
    let gh = github().await;
    let home = tempfile::tempdir().unwrap();
    let settings = github_settings(home.path(), &gh);
    let mut s = serve(
        home.path(),
        |c| {
            c.arg("--settings").arg(&settings);
        },
        "redirect URI at the identity provider",
    )
    .await;
    let (issuer, callback) = (s.issuer.clone(), banner_callback(&s.banner));
    assert!(
        s.banner.contains(&format!(
            "sign-in via: GitHub ({})",
            gh.authorization_endpoint()
        )),
        "{}",
        s.banner
    );
    assert!(!s.banner.contains(&gh.client_secret), "{}", s.banner);
    assert_eq!(callback, format!("{issuer}/idp/callback"));

    let http = no_redirects();
    let resp = authorize(&http, &issuer).await;
    assert_eq!(resp.status(), 302);
    let cookie = common::cookie(&resp);
    let mut next = resp.headers()["location"].to_str().unwrap().to_owned();
    // /idp/start → the provider's authorize → our callback.
    for expected in [gh.authorization_endpoint(), callback.clone()] {
        let resp = http
            .get(&next)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        next = resp.headers()["location"].to_str().unwrap().to_owned();
        assert!(next.starts_with(&expected), "{next}");
    }
    let resp = http
        .get(&next)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("name=\"decision\""),
        "our consent page: {html}"
    );
    assert!(html.contains("github:583231"), "{html}");
    assert_eq!(gh.tokens_issued(), 1);
    s.child.kill().await.unwrap();
}

/// F1, F5: the gateway's settings file takes `[[identity_providers]]` and `password_login`
/// like serve's: `/authorize` goes straight to the one provider; the banner names it and the
/// vault key file it created (0600) beside the database.
#[tokio::test]
async fn f1_gateway_settings_file_providers_sign_in() {
    let gh = github().await;
    let home = tempfile::tempdir().unwrap();
    let settings = github_settings(home.path(), &gh);
    let db = home.path().join("gw.db");
    let mut cmd = mcpauth(home.path());
    cmd.args(["gateway", "--bind", "127.0.0.1:0"])
        .args([
            "--upstream",
            &format!("http://{}/mcp", common::closed_address()),
        ])
        .args(["--database", &format!("sqlite://{}?mode=rwc", db.display())])
        .arg("--settings")
        .arg(&settings);
    let (mut child, banner) = started(cmd, "Press Ctrl-C").await;
    assert!(
        banner.contains(&format!(
            "sign-in via: GitHub ({})",
            gh.authorization_endpoint()
        )),
        "{banner}"
    );
    let key = mcpauth_authserver::default_key_path(&db);
    assert!(
        banner.contains(&format!("sealed with the key in {}", key.display())),
        "{banner}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let resource = banner_value(&banner, "MCP server:");
    let issuer = url::Url::parse(&resource)
        .unwrap()
        .origin()
        .ascii_serialization();
    let resp = authorize(&no_redirects(), &issuer).await;
    assert_eq!(
        resp.status(),
        302,
        "providers only: straight to the one provider"
    );
    let start = resp.headers()["location"].to_str().unwrap();
    assert!(
        start.starts_with(&format!("{issuer}/idp/start?")),
        "{start}"
    );
    child.kill().await.unwrap();
}

/// Bad `kind = "oauth2"` settings stop `serve` at start with a clear message.
#[tokio::test]
async fn f1_serve_refuses_bad_oauth2_provider_settings() {
    let gh = github().await;
    let cases = [
        ("token_endpoint = ", "needs token_endpoint"),
        ("authorization_endpoint = ", "needs authorization_endpoint"),
        ("kind = ", "is for kind = \"oauth2\""),
    ];
    for (drop, says) in cases {
        let home = tempfile::tempdir().unwrap();
        let settings = github_settings(home.path(), &gh);
        let text = std::fs::read_to_string(&settings).unwrap();
        let text: Vec<&str> = text.lines().filter(|l| !l.starts_with(drop)).collect();
        std::fs::write(&settings, text.join("\n")).unwrap();
        serve_fails(home.path(), &settings, says).await;
    }
    let home = tempfile::tempdir().unwrap();
    let settings = github_settings(home.path(), &gh);
    let text = std::fs::read_to_string(&settings).unwrap().replace(
        &gh.token_endpoint(),
        "http://github.example/login/oauth/access_token",
    );
    std::fs::write(&settings, text).unwrap();
    serve_fails(home.path(), &settings, "must be https").await;
}

/// Runs `serve --settings settings` and asserts that it fails saying `says`.
async fn serve_fails(home: &Path, settings: &Path, says: &str) {
    let db = format!("sqlite://{}/as.db?mode=rwc", home.display());
    let out = mcpauth(home)
        .args(["serve", "--bind", "127.0.0.1:0", "--database", &db])
        .arg("--settings")
        .arg(settings)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(says), "expected {says:?} in {stderr}");
}
