//! Administration, for the `mcpauth users|clients|keys|grants` commands: users (argon2id
//! passwords), pre-registered clients (the secret is returned once and stored hashed), signing
//! keys, and the grants users gave clients.
//! Every function works on a [`Store`] alone, with no running server.

use crate::audit::audit;
use mcpauth_core::resource::canonical_resource;
use mcpauth_core::{ClientMetadata, ClientSecret};

use crate::clients::{AuthMethod, Client, ClientKind, application_type, validate_redirect_uris};
use crate::config::{PasswordParams, SigningAlg};
use crate::error::AuthServerError;
use crate::keys;
use crate::passwords;
use crate::secrets::{hash_secret, now, random_bytes_b64, random_secret};
use crate::store::{ClientRow, GrantRow, Store, UserRow};

/// A user, without the password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// Stable id (the `sub` of tokens).
    pub id: String,
    /// Login name.
    pub username: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<&UserRow> for UserInfo {
    fn from(u: &UserRow) -> Self {
        UserInfo {
            id: u.id.clone(),
            username: u.username.clone(),
            created_at: u.created_at,
        }
    }
}

fn invalid(what: &'static str, reason: impl Into<String>) -> AuthServerError {
    AuthServerError::Invalid {
        what,
        reason: reason.into(),
    }
}

/// Adds a user with an argon2id-hashed password (at least 8 characters).
pub async fn add_user(
    store: &Store,
    username: &str,
    password: &str,
    params: PasswordParams,
) -> Result<UserInfo, AuthServerError> {
    if username.is_empty() || username.len() > 128 || username.chars().any(char::is_control) {
        return Err(invalid(
            "username",
            "use 1 to 128 characters without control characters",
        ));
    }
    if password.chars().count() < 8 {
        return Err(invalid("password", "use at least 8 characters"));
    }
    let pw = password.to_owned();
    let password_hash = tokio::task::spawn_blocking(move || passwords::hash(&pw, params))
        .await
        .map_err(|e| AuthServerError::Password(e.to_string()))??;
    let row = UserRow {
        id: random_bytes_b64(16),
        username: username.to_owned(),
        password_hash,
        created_at: now(),
    };
    store.insert_user(&row).await?;
    audit!(
        "user.added",
        user_id = row.id.as_str(),
        username = row.username.as_str()
    );
    Ok(UserInfo::from(&row))
}

/// Every user, by name.
pub async fn list_users(store: &Store) -> Result<Vec<UserInfo>, AuthServerError> {
    Ok(store
        .list_users()
        .await?
        .iter()
        .map(UserInfo::from)
        .collect())
}

/// Removes a user, their sessions and consents, and revokes their refresh tokens.
pub async fn remove_user(store: &Store, username: &str) -> Result<(), AuthServerError> {
    if store.delete_user(username).await? {
        audit!("user.removed", username);
        Ok(())
    } else {
        Err(AuthServerError::NotFound {
            what: "user",
            name: username.to_owned(),
        })
    }
}

/// A client to pre-register.
#[derive(Clone, Debug)]
pub struct NewClient {
    /// The id; `None` generates one.
    pub client_id: Option<String>,
    /// Shown on the consent page.
    pub client_name: Option<String>,
    /// How it authenticates; `private_key_jwt` needs `jwks` or `jwks_uri`.
    pub auth_method: AuthMethod,
    /// Redirect URIs (needed for the authorization code grant).
    pub redirect_uris: Vec<String>,
    /// Grant types; empty means `authorization_code` + `refresh_token`, plus
    /// `client_credentials` for confidential clients.
    pub grant_types: Vec<String>,
    /// The most the client may ask for; `None` means any supported scope.
    pub scope: Option<String>,
    /// Inline public keys (a JWK set) for `private_key_jwt`.
    pub jwks: Option<serde_json::Value>,
    /// Where the public keys are, for `private_key_jwt` (https).
    pub jwks_uri: Option<String>,
    /// `native` or `web`; inferred from the redirect URIs when `None`.
    pub application_type: Option<String>,
    /// The resources (RFC 8707 resource URIs, i.e. access-token audiences) this client serves
    /// as a resource server. Only such a client may use the introspection endpoint (RFC 7662),
    /// and only for access tokens issued for one of these; every other token it presents is
    /// inactive (security finding 8). Empty: an ordinary client. Needs a confidential
    /// `auth_method`.
    pub introspection: Vec<String>,
}

impl NewClient {
    /// A client with defaults: generated id, no redirect URIs, default grant types.
    pub fn new(auth_method: AuthMethod) -> Self {
        Self {
            client_id: None,
            client_name: None,
            auth_method,
            redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            scope: None,
            jwks: None,
            jwks_uri: None,
            application_type: None,
            introspection: Vec::new(),
        }
    }
}

/// A client as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientInfo {
    /// The client id.
    pub client_id: String,
    /// The display name.
    pub client_name: Option<String>,
    /// Where it came from.
    pub kind: ClientKind,
    /// How it authenticates.
    pub auth_method: AuthMethod,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// The resources whose access tokens it may introspect (a resource server); see
    /// [`NewClient::introspection`].
    pub introspection: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A newly added client and its secret, which is shown once and never stored in clear.
#[derive(Debug)]
pub struct CreatedClient {
    /// The client.
    pub info: ClientInfo,
    /// The generated secret, for `client_secret_basic` / `client_secret_post`.
    pub client_secret: Option<ClientSecret>,
}

fn client_info(row: &ClientRow, introspection: Vec<String>) -> Result<ClientInfo, AuthServerError> {
    let c = Client::from_row(row)?;
    Ok(ClientInfo {
        client_id: c.client_id,
        client_name: c.metadata.client_name,
        kind: c.kind,
        auth_method: c.auth_method,
        redirect_uris: c.metadata.redirect_uris,
        grant_types: c.metadata.grant_types,
        introspection,
        created_at: row.created_at,
    })
}

/// Pre-registers a client. Confidential clients using a secret get a generated one, returned
/// here only.
pub async fn add_client(store: &Store, new: NewClient) -> Result<CreatedClient, AuthServerError> {
    let client_id = new.client_id.unwrap_or_else(|| random_bytes_b64(18));
    if client_id.is_empty()
        || client_id.len() > 200
        || client_id.starts_with("https://")
        || client_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "client id",
            "use up to 200 characters without spaces; https:// ids are reserved for client ID \
             metadata documents",
        ));
    }
    let confidential = new.auth_method != AuthMethod::None;
    let grant_types = if new.grant_types.is_empty() {
        let mut g = vec!["authorization_code".to_owned(), "refresh_token".to_owned()];
        if confidential {
            g.push("client_credentials".into());
        }
        g
    } else {
        new.grant_types
    };
    for g in &grant_types {
        if !matches!(
            g.as_str(),
            "authorization_code"
                | "refresh_token"
                | "client_credentials"
                | crate::routes::device::DEVICE_GRANT
                | crate::jwt_grant::JWT_BEARER_GRANT
        ) {
            return Err(invalid("grant type", format!("{g:?} is not supported")));
        }
    }
    if !confidential && grant_types.iter().any(|g| g == "client_credentials") {
        return Err(invalid(
            "grant type",
            "client_credentials needs a confidential client",
        ));
    }
    if new.auth_method == AuthMethod::PrivateKeyJwt && new.jwks.is_none() && new.jwks_uri.is_none()
    {
        return Err(invalid("client", "private_key_jwt needs jwks or jwks_uri"));
    }
    if let Some(jwks) = &new.jwks {
        serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(jwks.clone())
            .map_err(|e| invalid("jwks", e.to_string()))?;
    }
    let introspection = introspection_resources(new.auth_method, new.introspection)?;
    let mut metadata = ClientMetadata {
        redirect_uris: new.redirect_uris,
        token_endpoint_auth_method: Some(new.auth_method.as_str().into()),
        grant_types,
        response_types: vec!["code".into()],
        client_name: new.client_name,
        scope: new.scope,
        application_type: new.application_type,
        jwks_uri: new.jwks_uri,
        jwks: new.jwks,
        ..Default::default()
    };
    let app_type = application_type(&metadata);
    validate_redirect_uris(app_type, &metadata.redirect_uris)
        .map_err(|r| invalid("redirect URI", r))?;
    metadata.application_type = Some(app_type.into());
    let secret = new.auth_method.uses_secret().then(random_secret);
    let row = ClientRow {
        client_id,
        kind: ClientKind::Static.as_str().into(),
        auth_method: new.auth_method.as_str().into(),
        secret_hash: secret.as_deref().map(hash_secret),
        metadata: serde_json::to_string(&metadata).unwrap_or_default(),
        created_at: now(),
        expires_at: None,
    };
    store.insert_resource_server(&row, &introspection).await?;
    audit!("client.added", client_id = row.client_id.as_str());
    Ok(CreatedClient {
        info: client_info(&row, introspection)?,
        client_secret: secret.map(ClientSecret::new),
    })
}

/// Checks the resources of a resource server: absolute http(s) URIs without a fragment (RFC
/// 8707 §2), each once, and a client that can authenticate (RFC 7662 §2.1: introspection needs
/// client authentication).
fn introspection_resources(
    auth_method: AuthMethod,
    resources: Vec<String>,
) -> Result<Vec<String>, AuthServerError> {
    if !resources.is_empty() && auth_method == AuthMethod::None {
        return Err(invalid(
            "introspection",
            "a resource server must be a confidential client (RFC 7662 §2.1)",
        ));
    }
    let mut checked: Vec<String> = Vec::with_capacity(resources.len());
    for r in resources {
        if r.contains('#') || canonical_resource(&r).is_err() {
            return Err(invalid(
                "introspection resource",
                format!("{r:?} is not an absolute http(s) URI without a fragment (RFC 8707 §2)"),
            ));
        }
        if !checked.contains(&r) {
            checked.push(r);
        }
    }
    Ok(checked)
}

/// Every client (pre-registered, dynamically registered and cached metadata documents).
pub async fn list_clients(store: &Store) -> Result<Vec<ClientInfo>, AuthServerError> {
    let mut introspection = store.all_introspection_resources().await?;
    store
        .list_clients()
        .await?
        .iter()
        .map(|row| {
            client_info(
                row,
                introspection.remove(&row.client_id).unwrap_or_default(),
            )
        })
        .collect()
}

/// Removes a client, its consents and codes, and revokes its refresh tokens.
pub async fn remove_client(store: &Store, client_id: &str) -> Result<(), AuthServerError> {
    if store.delete_client(client_id).await? {
        audit!("client.removed", client_id);
        Ok(())
    } else {
        Err(AuthServerError::NotFound {
            what: "client",
            name: client_id.to_owned(),
        })
    }
}

/// A signing key, without its private part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id (RFC 7638 thumbprint).
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// `current` (signs), `previous` (still published) or `retired`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Makes a new current key; the current one becomes previous (still in the JWKS so tokens it
/// signed stay valid), the previous one is retired. Running servers pick it up within a minute.
pub async fn rotate_keys(store: &Store, alg: SigningAlg) -> Result<KeyInfo, AuthServerError> {
    let key = keys::generate(alg)?;
    store.rotate_keys(&key).await?;
    audit!(
        "key.rotated",
        kid = key.kid.as_str(),
        alg = key.alg.as_str()
    );
    Ok(KeyInfo {
        kid: key.kid,
        alg: key.alg,
        status: key.status,
        created_at: key.created_at,
    })
}

/// Every key, current first.
pub async fn list_keys(store: &Store) -> Result<Vec<KeyInfo>, AuthServerError> {
    Ok(store
        .all_keys()
        .await?
        .into_iter()
        .map(|k| KeyInfo {
            kid: k.kid,
            alg: k.alg,
            status: k.status,
            created_at: k.created_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_clients_and_keys() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let p = PasswordParams::insecure_for_tests();
        add_user(&store, "alice", "long enough", p).await.unwrap();
        assert!(matches!(
            add_user(&store, "alice", "long enough", p).await,
            Err(AuthServerError::AlreadyExists { .. })
        ));
        assert!(add_user(&store, "bob", "short", p).await.is_err());
        assert_eq!(list_users(&store).await.unwrap().len(), 1);
        remove_user(&store, "alice").await.unwrap();
        assert!(remove_user(&store, "alice").await.is_err());

        let created = add_client(&store, NewClient::new(AuthMethod::SecretBasic))
            .await
            .unwrap();
        let secret = created.client_secret.unwrap();
        assert_eq!(secret.expose().len(), 43);
        let listed = list_clients(&store).await.unwrap();
        assert_eq!(listed[0].client_id, created.info.client_id);
        assert!(
            listed[0]
                .grant_types
                .contains(&"client_credentials".to_owned())
        );
        let mut bad = NewClient::new(AuthMethod::None);
        bad.redirect_uris = vec!["http://evil.example/cb".into()];
        assert!(add_client(&store, bad).await.is_err());
        // Security finding 8: a resource server's resources are absolute http(s) URIs.
        for resource in [
            "not a uri",
            "urn:example:mcp",
            "https://mcp.example/mcp#frag",
        ] {
            let mut bad = NewClient::new(AuthMethod::SecretBasic);
            bad.introspection = vec![resource.into()];
            assert!(add_client(&store, bad).await.is_err(), "{resource}");
        }
        let mut rs = NewClient::new(AuthMethod::SecretBasic);
        rs.introspection = vec!["https://mcp.example/mcp".into(); 2];
        let rs = add_client(&store, rs).await.unwrap().info;
        assert_eq!(rs.introspection, ["https://mcp.example/mcp"]);
        let listed = list_clients(&store).await.unwrap();
        let found = listed.iter().find(|c| c.client_id == rs.client_id).unwrap();
        assert_eq!(found.introspection, rs.introspection);
        remove_client(&store, &rs.client_id).await.unwrap();
        assert!(
            store
                .introspection_resources(&rs.client_id)
                .await
                .unwrap()
                .is_empty()
        );
        remove_client(&store, &created.info.client_id)
            .await
            .unwrap();

        let first = rotate_keys(&store, SigningAlg::Es256).await.unwrap();
        let second = rotate_keys(&store, SigningAlg::EdDsa).await.unwrap();
        let keys = list_keys(&store).await.unwrap();
        assert_eq!(keys[0].kid, second.kid);
        assert_eq!(keys[0].status, "current");
        assert!(
            keys.iter()
                .any(|k| k.kid == first.kid && k.status == "previous")
        );
    }
}

/// A live grant: what one authorization gave a client for a user (a refresh-token family;
/// grants without a refresh token end with their access token and are not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantInfo {
    /// The grant's id, for [`revoke_grant`].
    pub id: String,
    /// The user's id (the tokens' `sub`).
    pub user_id: String,
    /// The user's login name (`PROVIDER:SUB` for a federated user); `None` when the user is
    /// gone.
    pub username: Option<String>,
    /// The client.
    pub client_id: String,
    /// The client's display name, when it has one.
    pub client_name: Option<String>,
    /// The scope granted.
    pub scope: String,
    /// The resource (RFC 8707) its tokens are for.
    pub resource: Option<String>,
    /// When it was granted (Unix seconds).
    pub granted_at: i64,
    /// When its newest refresh token was issued: the code exchange or the last refresh.
    pub last_used_at: i64,
    /// When its newest refresh token expires.
    pub expires_at: i64,
}

async fn grant_info(store: &Store, g: GrantRow) -> Result<GrantInfo, AuthServerError> {
    let client_name = match store.client(&g.client_id).await? {
        Some(row) => Client::from_row(&row)?.metadata.client_name,
        None => None,
    };
    Ok(GrantInfo {
        id: g.family_id,
        user_id: g.user_id,
        username: g.username,
        client_id: g.client_id,
        client_name,
        scope: g.scope,
        resource: g.resource,
        granted_at: g.granted_at,
        last_used_at: g.last_used_at,
        expires_at: g.expires_at,
    })
}

/// The live grants of the user `username` (every user's with `None`), oldest first.
pub async fn list_grants(
    store: &Store,
    username: Option<&str>,
) -> Result<Vec<GrantInfo>, AuthServerError> {
    let user_id = match username {
        Some(name) => Some(
            store
                .user_by_name(name)
                .await?
                .ok_or_else(|| AuthServerError::NotFound {
                    what: "user",
                    name: name.to_owned(),
                })?
                .id,
        ),
        None => None,
    };
    let mut out = Vec::new();
    for g in store.live_grants(user_id.as_deref(), now()).await? {
        out.push(grant_info(store, g).await?);
    }
    Ok(out)
}

/// Revokes the live grant `id`: its refresh token and every access token issued from it
/// (running servers on the database refuse them within [`REVOCATION_SYNC`](crate::REVOCATION_SYNC)),
/// and the user's remembered consent for its client, which has to ask again.
pub async fn revoke_grant(store: &Store, id: &str) -> Result<GrantInfo, AuthServerError> {
    match store.revoke_grant(id, now()).await? {
        Some(g) => {
            audit!(
                "grant.revoked",
                grant_id = id,
                user_id = g.user_id.as_str(),
                client_id = g.client_id.as_str()
            );
            grant_info(store, g).await
        }
        None => Err(AuthServerError::NotFound {
            what: "grant",
            name: id.to_owned(),
        }),
    }
}
