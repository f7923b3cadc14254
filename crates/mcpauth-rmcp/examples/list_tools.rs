//! rmcp's MCP client, authorized by mcpauth: lists a server's tools and calls one.
//!
//! ```text
//! cargo run -p mcpauth-rmcp --example list_tools -- https://mcp.example.com/mcp [TOOL [JSON]]
//! ```
//!
//! With `MCP_CLIENT_ID` (and `MCPAUTH_CLIENT_SECRET` or `MCP_CLIENT_SECRET`) set, the client
//! credentials grant; otherwise a browser login (authorization code with PKCE, redirect to a
//! loopback listener). Tokens live in mcpauth's file store, shared with the `mcpauth` CLI and
//! other processes; DPoP is used when the authorization server and the MCP server both offer it.

use std::sync::Arc;

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: list_tools MCP_URL [TOOL [JSON]]")?;

    // The session: how tokens are obtained and where they are kept.
    let browser = Arc::new(Loopback::new(LoopbackOptions::default(), Arc::new(Print)));
    let config = SessionConfig::from_env(&url, browser);
    let http = OAuthHttp::new(HttpOptions::default())?;
    let store = Arc::new(FileStore::default_location()?);
    let session = Arc::new(Session::new(config, http, store));

    // rmcp's client, its requests authorized by the session.
    let client = ().serve(mcpauth_rmcp::transport(session)?).await?;
    for tool in client.list_all_tools().await? {
        println!("{}: {}", tool.name, tool.description.unwrap_or_default());
    }
    if let Some(name) = args.next() {
        let arguments = serde_json::from_str(&args.next().unwrap_or_else(|| "{}".into()))?;
        let call = CallToolRequestParams::new(name).with_arguments(arguments);
        let result = client.call_tool(call).await?;
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    client.cancel().await?;
    Ok(())
}
