//! `mcpauth serve`, `users`, `clients`, `keys` and `login` against each other: the product's
//! client and authorization server interoperate through the real login and consent pages.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{LIMIT, browser_login, mcpauth, start_login, stop};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// Runs `mcpauth ARGS` in `home` with `stdin`: (exit code, stdout, stderr).
pub(crate) async fn run<S: AsRef<std::ffi::OsStr>>(
    home: &Path,
    args: &[S],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = mcpauth(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `mcpauth serve` and returns it with its issuer (read from its banner).
async fn start_serve(home: &Path, database: &str, resource: &str) -> (Child, String) {
    let mut serve = mcpauth(home);
    serve.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database",
        database,
        "--resource",
        resource,
    ]);
    spawn_serve(serve).await
}

/// Spawns a `serve` command and returns it with its issuer (read from its banner).
pub(crate) async fn spawn_serve(mut serve: Command) -> (Child, String) {
    let mut child = serve
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let issuer = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.trim().strip_prefix("issuer:") {
                return i.trim().to_owned();
            }
        }
        panic!("mcpauth serve printed no issuer");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, issuer)
}

/// `mcpauth serve` on a new SQLite database in `home` with the user `alice` ([`PASSWORD`]), for
/// a minimal protected resource ([`start_resource`]) that names it, and `extra` flags: the
/// server, its issuer and the resource URL.
pub(crate) async fn serve_for_resource(home: &Path, extra: &[&str]) -> (Child, String, String) {
    let database = format!("sqlite://{}?mode=rwc", home.join("as.db").display());
    let (code, _, err) = run(
        home,
        &["users", "add", "alice", "--database", &database],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let mut serve = mcpauth(home);
    serve
        .args(["serve", "--bind", "127.0.0.1:0", "--database", &database])
        .args(["--resource", &resource])
        .args(extra);
    let (serve, issuer) = spawn_serve(serve).await;
    let cell = Arc::new(OnceLock::new());
    cell.set(issuer.clone()).unwrap();
    start_resource(listener, cell).await;
    (serve, issuer, resource)
}

/// A minimal protected MCP endpoint for the client's discovery: PRM pointing at `issuer` and
/// taking DPoP proofs (RFC 9728 §2, so clients bind their tokens), 401 without a token. (Token validation is the resource-server crate's job, tested there.)
pub(crate) async fn start_resource(
    listener: tokio::net::TcpListener,
    issuer: Arc<OnceLock<String>>,
) -> String {
    let base = format!("http://{}", listener.local_addr().unwrap());
    #[derive(Clone)]
    struct S {
        base: String,
        issuer: Arc<OnceLock<String>>,
    }
    async fn prm(State(s): State<S>) -> Json<Value> {
        Json(
            json!({"resource": format!("{}/mcp", s.base), "authorization_servers": [s.issuer.get().unwrap()], "dpop_signing_alg_values_supported": ["ES256"]}),
        )
    }
    async fn mcp(State(s): State<S>, headers: HeaderMap) -> Response {
        if headers.get(header::AUTHORIZATION).is_none() {
            let challenge = format!(
                "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                s.base
            );
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
            )
                .into_response();
        }
        Json(json!({"jsonrpc": "2.0", "id": 0, "result": {}})).into_response()
    }
    let app = axum::Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/mcp", post(mcp))
        .with_state(S {
            base: base.clone(),
            issuer,
        });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/mcp")
}

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a1_mcpauth_login_completes_the_code_flow_against_mcpauth_serve() {
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("as.db").display());
    let (code, _, err) = run(
        home.path(),
        &["users", "add", "alice", "--database", &database],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");

    let resource_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", resource_listener.local_addr().unwrap());
    let (mut serve, issuer) = start_serve(home.path(), &database, &resource).await;
    let issuer_cell = Arc::new(OnceLock::new());
    issuer_cell.set(issuer.clone()).unwrap();
    assert_eq!(
        start_resource(resource_listener, issuer_cell).await,
        resource
    );

    let (mut login, auth_url) = start_login(home.path(), &resource, &issuer).await;
    browser_login(&issuer, &auth_url, "alice", PASSWORD).await;
    let status = tokio::time::timeout(LIMIT, login.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    // The stored token is an RFC 9068 JWT for this resource from this issuer (SPEC S4, A11).
    let (code, token, err) = run(home.path(), &["token", &resource], "").await;
    assert_eq!(code, 0, "{err}");
    let token = token.trim();
    assert_eq!(jwt_part(token, 0)["typ"], "at+jwt");
    let claims = jwt_part(token, 1);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], resource);

    // Logout revokes at the server (RFC 7009).
    let (code, _, err) = run(home.path(), &["logout", &resource], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("revoked the refresh_token and the access_token"),
        "{err}"
    );

    // SIGTERM: a graceful stop with exit 0.
    stop(&mut serve).await;
}

#[tokio::test]
async fn admin_commands_manage_clients_and_keys() {
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("as.db").display());
    let db = ["--database", database.as_str()];
    let (code, out, err) = run(
        home.path(),
        &[
            &[
                "clients", "add", "--id", "robot", "--name", "Robot", "--json",
            ][..],
            &db,
        ]
        .concat(),
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["client_id"], "robot");
    assert!(
        created["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 32)
    );
    let (_, out, _) = run(
        home.path(),
        &[&["clients", "list", "--json"][..], &db].concat(),
        "",
    )
    .await;
    assert!(
        !out.contains(created["client_secret"].as_str().unwrap()),
        "a secret is shown once only"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["client_id"],
        "robot"
    );

    // A fresh database has no key until a server starts: two rotations make current + previous.
    for _ in 0..2 {
        let (code, _, err) = run(home.path(), &[&["keys", "rotate"][..], &db].concat(), "").await;
        assert_eq!(code, 0, "{err}");
    }
    let (_, out, _) = run(
        home.path(),
        &[&["keys", "list", "--json"][..], &db].concat(),
        "",
    )
    .await;
    let keys: Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"current") && statuses.contains(&"previous"),
        "{statuses:?}"
    );

    // Bad input: a password that is too short, and an unknown auth method.
    let (code, _, err) = run(
        home.path(),
        &[&["users", "add", "bob"][..], &db].concat(),
        "short\n",
    )
    .await;
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = run(
        home.path(),
        &[&["clients", "add", "--auth-method", "magic"][..], &db].concat(),
        "",
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown auth method"), "{err}");
}

/// Security finding 8 (RFC 7662 §2.1, §4): `mcpauth clients add --introspection RESOURCE`
/// makes a resource server that introspects the access tokens of RESOURCE through `mcpauth
/// serve`; a client added without it gets `{"active": false}` for the same token.
#[tokio::test]
async fn sec8_clients_add_introspection_makes_a_resource_server() {
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("as.db").display());
    let db = ["--database", database.as_str()];
    let resource = "http://127.0.0.1:9/mcp";
    let add = |args: &'static [&'static str]| {
        let args = [&["clients", "add", "--json"][..], args, &db].concat();
        let home = home.path().to_owned();
        async move {
            let (code, out, err) = run(&home, &args, "").await;
            assert_eq!(code, 0, "{err}");
            let v: Value = serde_json::from_str(&out).unwrap();
            let secret = v["client_secret"].as_str().unwrap().to_owned();
            (v, secret)
        }
    };
    let (rs, rs_secret) = add(&["--id", "rs", "--introspection", "http://127.0.0.1:9/mcp"]).await;
    assert_eq!(rs["introspection"], json!([resource]));
    let (robot, robot_secret) = add(&["--id", "robot"]).await;
    assert_eq!(robot["introspection"], json!([]));
    let (code, _, err) = run(
        home.path(),
        &[
            &["clients", "add", "--auth-method", "none"][..],
            &["--introspection", resource],
            &db,
        ]
        .concat(),
        "",
    )
    .await;
    assert_eq!(code, 1, "a public client cannot introspect: {err}");
    let (_, out, _) = run(
        home.path(),
        &[&["clients", "list", "--json"][..], &db].concat(),
        "",
    )
    .await;
    let listed: Value = serde_json::from_str(&out).unwrap();
    let listed_rs = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "rs");
    assert_eq!(listed_rs.unwrap()["introspection"], json!([resource]));

    let (_serve, issuer) = start_serve(home.path(), &database, resource).await;
    let resp = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("robot", Some(&robot_secret))
        .form(&[("grant_type", "client_credentials"), ("resource", resource)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token: Value = resp.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap();
    let introspect = |id: &'static str, secret: String| {
        let url = format!("{issuer}/introspect");
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let v = introspect("rs", rs_secret).await;
    assert_eq!(
        (v["active"].as_bool(), v["aud"].as_str()),
        (Some(true), Some(resource))
    );
    assert_eq!(
        introspect("robot", robot_secret).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn a7_plain_http_on_a_public_interface_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("as.db").display());
    let (code, _, err) = run(
        home.path(),
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--issuer",
            "http://auth.example.com",
            "--database",
            &database,
        ],
        "",
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("must be https (MCP SPEC A7)"), "{err}");
}

/// `mcpauth serve` over TLS with a fresh self-signed certificate for 127.0.0.1, plus `extra`
/// arguments: the child, its issuer and the certificate (PEM) to trust.
async fn serve_tls(home: &Path, extra: &[&str]) -> (tokio::process::Child, String, String) {
    let database = format!("sqlite://{}?mode=rwc", home.join("as.db").display());
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_file, key_file) = (home.join("cert.pem"), home.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let mut serve = mcpauth(home)
        .args(["serve", "--bind", "127.0.0.1:0", "--database", &database])
        .args([
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let issuer = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.trim().strip_prefix("issuer:") {
                return i.trim().to_owned();
            }
        }
        panic!("no issuer");
    })
    .await
    .unwrap();
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (serve, issuer, cert.cert.pem())
}

#[tokio::test]
async fn a7_serves_tls_with_the_given_certificate() {
    let home = tempfile::tempdir().unwrap();
    let (mut serve, issuer, cert_pem) = serve_tls(home.path(), &[]).await;
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let meta: Value = trusting
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], issuer);
    // A client that does not trust the certificate cannot connect: the handshake refuses the
    // certificate (review finding 14: that error, not any error).
    let e = reqwest::get(format!("{issuer}/healthz")).await.unwrap_err();
    let chain: Vec<String> =
        std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect();
    assert!(
        e.is_connect() && chain.iter().any(|m| m.contains("UnknownIssuer")),
        "{chain:?}"
    );
    serve.kill().await.unwrap();
}

/// Security finding 2 (slowloris), TLS side: connections stuck before the end of their TLS
/// handshake count against `--max-connections`, so a flood of them holds a bounded number of
/// sockets. With the cap at 2 and two clients that never send a ClientHello, a third client is
/// not served until one of them goes away.
#[tokio::test]
async fn sec2_stalled_tls_handshakes_count_against_the_connection_cap() {
    let home = tempfile::tempdir().unwrap();
    let (mut serve, issuer, cert_pem) = serve_tls(home.path(), &["--max-connections", "2"]).await;
    let addr = issuer.trim_start_matches("https://").to_owned();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_millis(1500))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = format!("{issuer}/healthz");
    assert!(
        trusting
            .get(&health)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let stalled_a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _stalled_b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let e = trusting.get(&health).send().await.unwrap_err();
    assert!(
        e.is_timeout(),
        "a third connection was served beside two stalled handshakes: {e}"
    );
    drop(stalled_a);
    let served = trusting.get(&health).send().await.unwrap();
    assert!(served.status().is_success());
    serve.kill().await.unwrap();
}

/// Security finding 4: the database holds the signing keys and password hashes. `mcpauth serve`
/// creates it, and the `-wal` and `-shm` files SQLite writes beside it, readable by the owner
/// only, even under `umask 000`; a database others can read is refused with the fix.
#[tokio::test]
async fn sec4_the_database_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("as.db");
    let database = format!("sqlite://{}?mode=rwc", path.display());
    // `sh` sets the umask, then becomes mcpauth.
    let mut serve = Command::new("sh");
    serve
        .args(["-c", r#"umask 000 && exec "$@""#, "sh"])
        .arg(env!("CARGO_BIN_EXE_mcpauth"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database", &database])
        .env("MCPAUTH_HOME", home.path())
        .kill_on_drop(true);
    let (mut serve, _) = spawn_serve(serve).await;
    // Serving: the migrations and the first signing key went through the WAL.
    for name in ["as.db", "as.db-wal", "as.db-shm"] {
        let file = home.path().join(name);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    serve.kill().await.unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(home.path(), &["users", "list", "--database", &database], "").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
}

/// Security finding 5: names in the database reach the admin's terminal escaped. A client name
/// stored by anonymous registration (before registration refused such names) holds an OSC 8
/// hyperlink, BEL, a clear-screen and a newline and tabs that would forge a row; a username holds
/// a bidirectional override. `--json` stays exact.
#[tokio::test]
async fn sec5_clients_and_users_lists_escape_control_characters() {
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("as.db").display());
    let db = ["--database", database.as_str()];
    let (code, _, err) = run(
        home.path(),
        &[
            &["clients", "add", "--id", "evil", "--auth-method", "none"][..],
            &db,
        ]
        .concat(),
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(
        home.path(),
        &[&["users", "add", "bob"][..], &db].concat(),
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let name =
        "Robot\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07\x1b[2J\nadmin\tnone\tTrusted";
    let username = "bob\u{202E}nimda";
    let pool = sqlx::SqlitePool::connect(&database).await.unwrap();
    sqlx::query("UPDATE clients SET metadata = json_set(metadata, '$.client_name', $1)")
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET username = $1")
        .bind(username)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (code, out, err) = run(home.path(), &[&["clients", "list"][..], &db].concat(), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(['\x1b', '\x07']), "{out:?}");
    assert_eq!(out.lines().count(), 1, "a forged row: {out:?}");
    assert_eq!(
        out.trim_end(),
        "evil\tnone\tRobot\\x1b]8;;https://evil.example/\\x07click\\x1b]8;;\\x07\\x1b[2J\\nadmin\\tnone\\tTrusted"
    );
    let (_, out, _) = run(
        home.path(),
        &[&["clients", "list", "--json"][..], &db].concat(),
        "",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["client_name"],
        name
    );

    let (code, out, err) = run(home.path(), &[&["users", "list"][..], &db].concat(), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{202E}'), "{out:?}");
    assert!(out.starts_with("bob\\u{202e}nimda\t"), "{out:?}");
    let (_, out, _) = run(
        home.path(),
        &[&["users", "list", "--json"][..], &db].concat(),
        "",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["username"],
        username
    );
}

/// Review finding 8: `--dynamic-client-ttl DAYS` (and `dynamic_client_ttl` in the settings file)
/// is how long a registered client lives; 0 means never, which `/register` reports as
/// `client_secret_expires_at: 0` (RFC 7591 §3.2.1).
#[tokio::test]
async fn review8_dynamic_client_ttl_flag_and_setting() {
    async fn secret_expiry(home: &Path, database: &str, extra: &[&str]) -> i64 {
        let mut serve = mcpauth(home);
        serve.args(["serve", "--bind", "127.0.0.1:0", "--database", database]);
        serve.args(extra);
        let (mut child, issuer) = spawn_serve(serve).await;
        let resp = reqwest::Client::new()
            .post(format!("{issuer}/register"))
            .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        child.kill().await.unwrap();
        body["client_secret_expires_at"].as_i64().unwrap()
    }
    let home = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", home.path().join("as.db").display());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let days = |n: i64| n * 24 * 3600;

    let before = now();
    let default = secret_expiry(home.path(), &database, &[]).await;
    assert!((before + days(90)..=now() + days(90)).contains(&default));
    let never = secret_expiry(home.path(), &database, &["--dynamic-client-ttl", "0"]).await;
    assert_eq!(never, 0);
    let settings = home.path().join("serve.toml");
    std::fs::write(&settings, "dynamic_client_ttl = 2\n").unwrap();
    let before = now();
    let from_file = secret_expiry(
        home.path(),
        &database,
        &["--settings", settings.to_str().unwrap()],
    )
    .await;
    assert!((before + days(2)..=now() + days(2)).contains(&from_file));
}
