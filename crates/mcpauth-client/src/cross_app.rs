//! Enterprise-managed authorization / cross-app access (MCP SPEC A13, SEP-990): the client
//! exchanges the user's ID token at the enterprise IdP for an ID-JAG (RFC 8693), then presents
//! it to the MCP authorization server with the JWT bearer grant (RFC 7523).

use mcpauth_core::{Assertion, AuthorizationServerMetadata, ClientSecret, ScopeSet};

use crate::ClientError;
use crate::grants::{Resource, TokenEndpoint};
use crate::http::OAuthHttp;
use crate::registration::auth_method;
use crate::store::{ClientRecord, RegistrationKind, SCHEMA_VERSION, now_unix};

/// RFC 8693 token type of an OpenID Connect ID token.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The token type of an Identity Assertion JWT Authorization Grant.
pub const ID_JAG_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// What the client needs to obtain an ID-JAG from the enterprise IdP.
#[derive(Clone, Debug)]
pub struct CrossAppAccess {
    /// The IdP's issuer.
    pub idp_issuer: String,
    /// The IdP's token endpoint.
    pub idp_token_endpoint: String,
    /// The user's ID token from the IdP (the RFC 8693 `subject_token`).
    pub id_token: Assertion,
    /// This client's id at the IdP.
    pub idp_client_id: String,
    /// This client's secret at the IdP, if it is confidential there.
    pub idp_client_secret: Option<ClientSecret>,
}

impl CrossAppAccess {
    /// Exchanges the ID token for an ID-JAG whose audience is the MCP authorization server.
    pub async fn id_jag(
        &self,
        http: &OAuthHttp,
        authorization_server: &AuthorizationServerMetadata,
        resource: Resource<'_>,
        scope: Option<&ScopeSet>,
    ) -> Result<Assertion, ClientError> {
        let idp = AuthorizationServerMetadata {
            issuer: self.idp_issuer.clone(),
            token_endpoint: Some(self.idp_token_endpoint.clone()),
            ..Default::default()
        };
        let client = ClientRecord {
            schema: SCHEMA_VERSION,
            issuer: self.idp_issuer.clone(),
            client_id: self.idp_client_id.clone(),
            client_secret: self.idp_client_secret.clone(),
            token_endpoint_auth_method: if self.idp_client_secret.is_some() {
                auth_method::CLIENT_SECRET_BASIC
            } else {
                auth_method::NONE
            }
            .into(),
            redirect_uris: Vec::new(),
            kind: RegistrationKind::PreRegistered,
            secret_expires_at: None,
            updated_at: now_unix(),
        };
        let mut params = vec![
            ("requested_token_type", ID_JAG_TYPE.to_owned()),
            ("audience", authorization_server.issuer.clone()),
            ("subject_token", self.id_token.expose().to_owned()),
            ("subject_token_type", ID_TOKEN_TYPE.to_owned()),
        ];
        if let Some(r) = resource {
            params.push(("resource", r.to_owned()));
        }
        if let Some(s) = scope.filter(|s| !s.is_empty()) {
            params.push(("scope", s.to_string()));
        }
        let endpoint = TokenEndpoint {
            http,
            metadata: &idp,
            client: &client,
            signing_key: None,
            dpop: None,
        };
        let response = endpoint.token_exchange(&params).await?;
        if response.issued_token_type.as_deref() != Some(ID_JAG_TYPE) {
            return Err(ClientError::Config(format!(
                "the IdP issued {:?} instead of an ID-JAG",
                response.issued_token_type
            )));
        }
        Ok(Assertion::new(response.access_token.expose()))
    }
}
