//! rmcp's MCP client, authorized by mcpauth: lists a server's tools and calls one.
//!
//! ```text
//! cargo run -p mcpauth-rmcp --example list_tools -- [OPTIONS] https://mcp.example.com/mcp [TOOL [JSON]]
//! ```
//!
//! Options: `--no-dpop` (Bearer tokens only), `--pause SECS` (wait between listing the tools
//! and calling one, in the same MCP session), `--refresh-margin SECS` (refresh a token this
//! long before it expires; default 60).
//!
//! With `MCP_CLIENT_ID` (and `MCPAUTH_CLIENT_SECRET` or `MCP_CLIENT_SECRET`) set, the client
//! credentials grant; otherwise a browser login (authorization code with PKCE, redirect to a
//! loopback listener). Tokens live in mcpauth's file store, shared with the `mcpauth` CLI and
//! other processes; DPoP is used when the authorization server and the MCP server both offer it.

use std::sync::Arc;
use std::time::Duration;

use mcpauth_client::authorize::Presenter;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::loopback::{Loopback, LoopbackOptions};
use mcpauth_client::session::{Session, SessionConfig};
use mcpauth_client::store::FileStore;
use mcpauth_core::device::DeviceAuthorization;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;

/// Tells the user where to log in.
#[derive(Debug)]
struct Print;

impl Presenter for Print {
    fn show_authorization_url(&self, url: &str) {
        eprintln!("Open this page to log in:\n\n  {url}\n");
    }
    fn show_device_code(&self, device: &DeviceAuthorization) {
        eprintln!(
            "Approve {} at {}",
            device.user_code, device.verification_uri
        );
    }
}

const USAGE: &str =
    "usage: list_tools [--no-dpop] [--pause SECS] [--refresh-margin SECS] MCP_URL [TOOL [JSON]]";

/// The options before the MCP URL.
struct Options {
    dpop: bool,
    pause: Duration,
    refresh_margin: Duration,
}

impl Options {
    /// Reads the options; returns them and the remaining arguments.
    fn parse(
        args: impl Iterator<Item = String>,
    ) -> Result<(Self, impl Iterator<Item = String>), Box<dyn std::error::Error>> {
        let mut args = args.peekable();
        let mut options = Options {
            dpop: true,
            pause: Duration::ZERO,
            refresh_margin: Duration::from_secs(60),
        };
        while let Some(flag) = args.next_if(|a| a.starts_with("--")) {
            let mut seconds = || -> Result<Duration, Box<dyn std::error::Error>> {
                let value = args.next().ok_or(USAGE)?;
                Ok(Duration::from_secs(value.parse().map_err(|_| {
                    format!("{flag} takes whole seconds, not {value:?}")
                })?))
            };
            match flag.as_str() {
                "--no-dpop" => options.dpop = false,
                "--pause" => options.pause = seconds()?,
                "--refresh-margin" => options.refresh_margin = seconds()?,
                _ => return Err(format!("unknown option {flag}; {USAGE}").into()),
            }
        }
        Ok((options, args))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes, each once (rmcp's errors wrap the session's).
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message = format!("{message}: {text}");
                }
                source = cause.source();
            }
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (options, mut args) = Options::parse(std::env::args().skip(1))?;
    let url = args.next().ok_or(USAGE)?;

    // The session: how tokens are obtained and where they are kept.
    let browser = Arc::new(Loopback::new(LoopbackOptions::default(), Arc::new(Print)));
    let mut config = SessionConfig::from_env(&url, browser);
    config.dpop = options.dpop;
    config.refresh_margin = options.refresh_margin;
    let http = OAuthHttp::new(HttpOptions::default())?;
    let store = Arc::new(FileStore::default_location()?);
    let session = Arc::new(Session::new(config, http, store));

    // rmcp's client, its requests authorized by the session.
    let client = ().serve(mcpauth_rmcp::transport(session)?).await?;
    for tool in client.list_all_tools().await? {
        println!("{}: {}", tool.name, tool.description.unwrap_or_default());
    }
    tokio::time::sleep(options.pause).await;
    if let Some(name) = args.next() {
        let arguments = serde_json::from_str(&args.next().unwrap_or_else(|| "{}".into()))?;
        let call = CallToolRequestParams::new(name).with_arguments(arguments);
        let result = client.call_tool(call).await?;
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    client.cancel().await?;
    Ok(())
}
