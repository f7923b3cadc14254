//! The `mcpauth-client` library against this server: discovery through a protected resource's
//! metadata, then the client credentials grant with a pre-registered client.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use mcpauth_client::http::{HttpOptions, OAuthHttp};
use mcpauth_client::session::{Session, SessionConfig};
use mcpauth_client::store::MemoryStore;
use mcpauth_core::ClientSecret;
use serde_json::json;

use crate::support::*;

both_backends! {
    /// C1, C21, A12: the client library finds this server from a resource's PRM and gets a
    /// token for that resource with client_secret_basic.
    async fn mcpauth_client_gets_a_client_credentials_token(db) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let resource_base = format!("http://{}", listener.local_addr().unwrap());
        let resource = format!("{resource_base}/mcp");
        let r = resource.clone();
        let ts = TestServer::start(db, move |c| c.resources = vec![r]).await;
        let prm = json!({"resource": resource, "authorization_servers": [ts.issuer]});
        let app = axum::Router::new().route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || { let prm = prm.clone(); async move { Json(prm) } }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let (id, secret) = ts.add_resource_server(&[&resource]).await;
        let config = SessionConfig::client_credentials(
            resource.clone(),
            id.clone(),
            Some(ClientSecret::new(secret.clone())),
        );
        let http = OAuthHttp::new(HttpOptions { timeout: Duration::from_secs(10), ..Default::default() }).unwrap();
        let session = Session::new(config, http, Arc::new(MemoryStore::new()));
        let token = session.access_token().await.unwrap();
        let c = claims(token.expose());
        assert_eq!(c["aud"], resource.as_str());
        assert_eq!(c["client_id"], id.as_str());
        assert_eq!(introspect(&ts, &(id, secret), token.expose()).await["active"], true);
    }
}
