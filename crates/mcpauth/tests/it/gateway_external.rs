//! `mcpauth gateway` with an external authorization server: `--issuer`, `--audience`,
//! introspection, settings, DPoP.

use std::path::Path;

use serde_json::{Value, json};
use tokio::process::Child;

use crate::common::{dpop_initialize, http, mcpauth};
use crate::gateway::*;

/// An API identifier in `aud`, as Okta and Auth0 issue (Entra's `api://…` identifiers are
/// tested in mcpauth-resource: `mcpauth serve` only issues tokens for http(s) resources).
const API: &str = "https://api.example.com";

/// `mcpauth serve` as the external identity provider: resources [`API`] (an Okta- or
/// Auth0-style API identifier) and another API; a client `robot` (client credentials) and,
/// with `introspector`, a resource server `gw` that may introspect `https://api.example.com` tokens. Returns
/// the server, its issuer and the secrets of `robot` and `gw`.
async fn external_idp(home: &Path, introspector: bool) -> (Child, String, String, String) {
    let database = format!("sqlite://{}?mode=rwc", home.join("idp.db").display());
    let robot = add_client(home, &database, &["--id", "robot"]).await;
    let gw = if introspector {
        add_client(home, &database, &["--id", "gw", "--introspection", API]).await
    } else {
        String::new()
    };
    let mut serve = mcpauth(home);
    serve.args(["serve", "--bind", "127.0.0.1:0", "--database", &database]);
    serve.args(["--resource", API, "--resource", "https://other.example/api"]);
    let (child, issuer) = crate::serve::spawn_serve(serve).await;
    (child, issuer, robot, gw)
}

/// The protected resource metadata (RFC 9728) of the gateway's MCP URL `url` (path `/mcp`).
async fn prm_of(url: &str) -> Value {
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        url.trim_end_matches("/mcp")
    );
    http()
        .get(&prm_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `mcpauth clients add ARGS` at `database`; the new client's secret.
pub(crate) async fn add_client(home: &Path, database: &str, args: &[&str]) -> String {
    let out = mcpauth(home)
        .args(["clients", "add", "--json", "--database", database])
        .args(args)
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    v["client_secret"].as_str().unwrap().to_owned()
}

/// A client-credentials access token of `robot` for `resource` (RFC 8707), scope `mcp`.
async fn token_for(issuer: &str, robot: &str, resource: &str) -> String {
    let body: Value = http()
        .post(format!("{issuer}/token"))
        .basic_auth("robot", Some(robot))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", "mcp"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// MCP SPEC S5 with an external issuer whose tokens name an API identifier: `--audience
/// https://api.example.com` accepts them, a token for another API of the same issuer is refused
/// with 401; without `--scope` the gateway warns that many identity providers need one, and
/// its PRM has no `scopes_supported` (RFC 9728 §2: optional; `[]` would say "no scopes").
#[tokio::test]
async fn s5_external_issuer_with_an_api_audience_accepts_only_its_tokens() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, _) = external_idp(home.path(), false).await;
    let (mut gateway, banner) = start_gateway(
        home.path(),
        &["--demo", "--issuer", &issuer, "--audience", API],
        &[],
    )
    .await;
    let url = banner_value(&banner, "MCP server:");
    assert!(
        banner
            .iter()
            .any(|l| l.contains("without a scope") && l.contains("--scope")),
        "{banner:?}"
    );
    let ours = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &ours).await, 200);
    let theirs = token_for(&issuer, &robot, "https://other.example/api").await;
    assert_eq!(initialize_with(&url, &theirs).await, 401);
    let prm = prm_of(&url).await;
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    assert!(prm.get("scopes_supported").is_none(), "{prm}");
    // RFC 9728 §2: the proofs it takes (--dpop allow, the default), so clients bind tokens.
    assert!(
        prm["dpop_signing_alg_values_supported"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("ES256"))),
        "{prm}"
    );
    assert!(
        prm.get("dpop_bound_access_tokens_required").is_none(),
        "{prm}"
    );
    gateway.kill().await.unwrap();
}

/// RFC 9728 §2 `authorization_servers`: with `--issuer` and `--introspection-url` together the
/// PRM names the given issuer (not the introspection URL's origin) and introspection validates
/// the tokens (RFC 7662, `aud` from `--audience`). With `--introspection-url` alone the guessed
/// issuer comes with a warning.
#[tokio::test]
async fn rfc9728_issuer_with_introspection_is_published_and_tokens_are_introspected() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, gw) = external_idp(home.path(), true).await;
    let introspection = format!("{issuer}/introspect");
    let given = format!("{issuer}/realms/x");
    let args = [
        "--demo",
        "--introspection-url",
        &introspection,
        "--introspection-client-id",
        "gw",
        "--audience",
        API,
        "--scope",
        "mcp",
    ];
    let env = [("MCPAUTH_CLIENT_SECRET", gw.as_str())];
    let with_issuer = [&args[..], &["--issuer", &given]].concat();
    let (mut gateway, banner) = start_gateway(home.path(), &with_issuer, &env).await;
    let url = banner_value(&banner, "MCP server:");
    let prm = prm_of(&url).await;
    assert_eq!(prm["authorization_servers"], json!([given]), "{prm}");
    assert!(!banner.iter().any(|l| l.contains("guessed")), "{banner:?}");
    // `mcpauth serve` names itself in `iss`, not the given issuer: refused (RFC 7662 §2.2).
    let token = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &token).await, 401);
    gateway.kill().await.unwrap();

    let with_real_issuer = [&args[..], &["--issuer", &issuer]].concat();
    let (mut gateway, banner) = start_gateway(home.path(), &with_real_issuer, &env).await;
    let url = banner_value(&banner, "MCP server:");
    let prm = prm_of(&url).await;
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    assert_eq!(prm["scopes_supported"], json!(["mcp"]));
    let token = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &token).await, 200);
    let theirs = token_for(&issuer, &robot, "https://other.example/api").await;
    assert_eq!(initialize_with(&url, &theirs).await, 401);
    gateway.kill().await.unwrap();

    let (mut gateway, banner) = start_gateway(home.path(), &args, &env).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("guessed") && l.contains("--issuer")),
        "{banner:?}"
    );
    gateway.kill().await.unwrap();
}

/// The settings file carries an external issuer's settings (`issuer`, `audiences`, `scopes`),
/// and the flags about an external issuer's tokens are refused without one, naming the flag.
#[tokio::test]
async fn external_issuer_settings_from_the_file_and_misplaced_flags() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, _) = external_idp(home.path(), false).await;
    let settings = home.path().join("gateway.toml");
    std::fs::write(
        &settings,
        format!("issuer = \"{issuer}\"\naudiences = [\"{API}\"]\nscopes = [\"mcp\"]\n"),
    )
    .unwrap();
    let settings = settings.to_str().unwrap();
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--settings", settings], &[]).await;
    let url = banner_value(&banner, "MCP server:");
    assert_eq!(banner_value(&banner, "token audience:"), API);
    assert!(
        !banner.iter().any(|l| l.contains("without a scope")),
        "{banner:?}"
    );
    let token = token_for(&issuer, &robot, API).await;
    assert_eq!(initialize_with(&url, &token).await, 200);
    gateway.kill().await.unwrap();

    for flags in [
        &["--audience", API][..],
        &["--jwks-uri", "http://127.0.0.1:9/jwks"],
        &["--accept-issuer-trailing-slash"],
        &["--accept-plain-jwt"],
    ] {
        let out = mcpauth(home.path())
            .args(["gateway", "--demo", "--bind", "127.0.0.1:0"])
            .args(flags)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flags[0]) && err.contains("--issuer"), "{err}");
    }
}

/// The gateway fetches an external issuer's keys at start-up: a wrong or unreachable issuer is
/// a warning at once (not only a 503 at the first request); the JWT flags are refused with
/// introspection, which never sees a JWT header.
#[tokio::test]
async fn an_unreachable_issuer_is_a_startup_warning_and_jwt_flags_need_jwt_validation() {
    let home = tempfile::tempdir().unwrap();
    let issuer = format!("http://{}", crate::common::closed_address());
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--issuer", &issuer], &[]).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("cannot fetch the signing keys") && l.contains(&issuer)),
        "{banner:?}"
    );
    gateway.kill().await.unwrap();

    let (_idp, issuer, _, _) = external_idp(home.path(), false).await;
    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--issuer", &issuer], &[]).await;
    assert!(
        !banner.iter().any(|l| l.contains("cannot fetch")),
        "{banner:?}"
    );
    gateway.kill().await.unwrap();

    let out = mcpauth(home.path())
        .args([
            "gateway",
            "--demo",
            "--bind",
            "127.0.0.1:0",
            "--issuer",
            &issuer,
        ])
        .args(["--introspection-url", &format!("{issuer}/introspect")])
        .args(["--introspection-client-id", "gw", "--accept-plain-jwt"])
        .env("MCPAUTH_CLIENT_SECRET", "s")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--accept-plain-jwt") && err.contains("introspect"),
        "{err}"
    );
}

/// SPEC D5 at the gateway: `--dpop require` refuses a bearer token of the external issuer with
/// a `DPoP` challenge naming the proof algorithms (RFC 9449 §7.1); with the embedded server, a
/// request without credentials gets the Bearer challenge (for discovery) and a DPoP one.
#[tokio::test]
async fn d5_gateway_dpop_require_refuses_bearer_tokens() {
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, _) = external_idp(home.path(), false).await;
    let (mut gateway, banner) = start_gateway(
        home.path(),
        &[
            "--demo",
            "--issuer",
            &issuer,
            "--audience",
            API,
            "--dpop",
            "require",
        ],
        &[],
    )
    .await;
    let url = banner_value(&banner, "MCP server:");
    let token = token_for(&issuer, &robot, API).await;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    let resp = http()
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP ")
            && challenge.contains("algs=")
            && challenge.contains("invalid_token"),
        "{challenge}"
    );
    gateway.kill().await.unwrap();

    let (mut gateway, banner) =
        start_gateway(home.path(), &["--demo", "--dpop", "require"], &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let resp = http()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let schemes: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(schemes, ["Bearer", "DPoP"]);
    gateway.kill().await.unwrap();
}

/// A client-credentials token of `robot` at `issuer` for `resource`, bound to `key` (RFC 9449
/// §5: a proof at /token).
async fn dpop_token(
    issuer: &str,
    robot: &str,
    resource: &str,
    key: &mcpauth_core::dpop::DpopKey,
) -> String {
    let token_url = format!("{issuer}/token");
    let body: Value = http()
        .post(&token_url)
        .basic_auth("robot", Some(robot))
        .header("dpop", key.proof("POST", &token_url, None, None).unwrap())
        .form(&[("grant_type", "client_credentials"), ("resource", resource)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// SPEC D7, RFC 9449 §11.1 with an external issuer: gateways given one `--database` share
/// their DPoP replay cache (a proof used at one instance is refused at the next, started on the
/// same address as a second instance behind one URL would be reached); without `--database`
/// each instance remembers proofs in its own memory only, and the banner says which.
#[tokio::test]
async fn d7_external_issuer_gateways_share_dpop_proofs_through_database() {
    use mcpauth_core::dpop::DpopKey;
    let home = tempfile::tempdir().unwrap();
    let (_idp, issuer, robot, _) = external_idp(home.path(), false).await;
    let replay = format!(
        "sqlite://{}?mode=rwc",
        home.path().join("replay.db").display()
    );
    let bind = crate::common::closed_address().to_string();
    let external = ["--demo", "--issuer", issuer.as_str(), "--audience", API];
    let shared: Vec<&str> = external
        .iter()
        .copied()
        .chain(["--database", &replay])
        .collect();
    let key = DpopKey::generate().unwrap();
    let token = dpop_token(&issuer, &robot, API, &key).await;

    let (mut first, banner) = start_gateway_at(home.path(), &bind, &shared, &[]).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("DPoP replay cache:") && l.contains("replay.db")),
        "{banner:?}"
    );
    let url = banner_value(&banner, "MCP server:");
    let proof = key.proof("POST", &url, Some(&token), None).unwrap();
    assert_eq!(
        dpop_initialize(&url, &token, proof.clone()).await.status(),
        200
    );
    first.kill().await.unwrap();
    first.wait().await.unwrap();
    let (mut second, _) = start_gateway_at(home.path(), &bind, &shared, &[]).await;
    let replayed = dpop_initialize(&url, &token, proof).await;
    assert_eq!(
        replayed.status(),
        401,
        "the second instance accepted a used proof"
    );
    assert!(
        replayed.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("already used")
    );
    second.kill().await.unwrap();
    second.wait().await.unwrap();

    let (mut alone, banner) = start_gateway_at(home.path(), &bind, &external, &[]).await;
    assert!(
        banner
            .iter()
            .any(|l| l.contains("DPoP replay cache:") && l.contains("this process's memory")),
        "{banner:?}"
    );
    let proof = key.proof("POST", &url, Some(&token), None).unwrap();
    assert_eq!(
        dpop_initialize(&url, &token, proof.clone()).await.status(),
        200
    );
    assert_eq!(dpop_initialize(&url, &token, proof).await.status(), 401);
    alone.kill().await.unwrap();
}

/// SPEC D4 and D7 at a gateway with its embedded server: a client-credentials token bound to a
/// DPoP key (proof at the gateway's /token) is served with a fresh proof by that key; a proof is
/// used once, and the gateway remembers it in its database, so a gateway started again on the
/// same database (as a second instance would share it) still refuses it (RFC 9449 §11.1).
#[tokio::test]
async fn d7_the_embedded_gateway_keeps_dpop_proofs_in_its_database() {
    use mcpauth_core::dpop::DpopKey;
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("gw.db").display());
    let bind = crate::common::closed_address().to_string();
    // A real database (`--demo` keeps an in-memory one): the stdio test server behind it.
    let server = home.path().join("server.py");
    std::fs::write(&server, crate::gateway_stdio::PY_SERVER).unwrap();
    let server = server.to_str().unwrap();
    let args = ["--database", database.as_str(), "--", "python3", server];
    let (mut gateway, banner) = start_gateway_at(home.path(), &bind, &args, &[]).await;
    let url = banner_value(&banner, "MCP server:");
    let issuer = url.trim_end_matches("/mcp").to_owned();
    let robot = add_client(home.path(), &database, &["--id", "robot"]).await;
    let key = DpopKey::generate().unwrap();
    let token = dpop_token(&issuer, &robot, &url, &key).await;
    let call = |proof: String| dpop_initialize(&url, &token, proof);
    let proof = key.proof("POST", &url, Some(&token), None).unwrap();
    assert_eq!(call(proof.clone()).await.status(), 200);
    let replayed = call(proof.clone()).await;
    assert_eq!(replayed.status(), 401);
    let challenge = replayed.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("already used"), "{challenge}");
    gateway.kill().await.unwrap();
    gateway.wait().await.unwrap();

    let (mut gateway, _) = start_gateway_at(home.path(), &bind, &args, &[]).await;
    assert_eq!(
        call(proof).await.status(),
        401,
        "the restarted gateway forgot the proof"
    );
    let fresh = key.proof("POST", &url, Some(&token), None).unwrap();
    assert_eq!(call(fresh).await.status(), 200);
    gateway.kill().await.unwrap();
}
