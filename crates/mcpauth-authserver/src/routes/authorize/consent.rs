//! Remembered consent, and when it may answer without the page (RFC 8252 §8.6, security
//! finding 7).

use super::*;

/// Sorted, space-separated: the key under which consent is remembered.
pub(super) fn consent_key(scope: &str) -> String {
    let set = ScopeSet::parse(scope);
    let mut v: Vec<&str> = set.iter().collect();
    v.sort_unstable();
    v.join(" ")
}

/// Whether the client's identity is assured well enough for remembered consent to answer
/// without the page (RFC 8252 §8.6: "unless the identity of the client can be proven, the
/// request SHOULD be processed as if no previous request had been approved"). A confidential
/// client proves it at the token endpoint, where the code is useless without its credentials;
/// a public client only through a claimed https redirect URI (see [`claimed_https_redirect`]).
pub(super) fn identity_assured(client: &Client, redirect_uri: &str) -> bool {
    client.is_confidential() || claimed_https_redirect(client.kind, &client.client_id, redirect_uri)
}

/// Whether `redirect_uri` is an https URI that only the client can receive: for a client ID
/// metadata document, one on the document's own origin (whoever serves the document there
/// receives the code; MCP SPEC A10); for any other client, one on a host that is not loopback.
/// Loopback and private-use redirect URIs can be claimed by any program on the user's
/// machine (RFC 8252 §8.6, §8.7), and http is never claimed.
fn claimed_https_redirect(kind: ClientKind, client_id: &str, redirect_uri: &str) -> bool {
    let Ok(redirect) = url::Url::parse(redirect_uri) else {
        return false;
    };
    if redirect.scheme() != "https" {
        return false;
    }
    match kind {
        // A loopback document origin is only fetched when an operator allow-lists it (A10).
        ClientKind::MetadataDocument => {
            url::Url::parse(client_id).is_ok_and(|doc| doc.origin() == redirect.origin())
        }
        ClientKind::Static | ClientKind::Dynamic => !is_loopback(&redirect),
    }
}

pub(super) async fn has_consent(
    shared: &Shared,
    user_id: &str,
    pending: &Pending,
) -> Result<bool, AuthServerError> {
    let wanted = ScopeSet::parse(&pending.scope);
    Ok(shared
        .store
        .consents(user_id, &pending.client_id)
        .await?
        .iter()
        .any(|granted| ScopeSet::parse(granted).is_superset(&wanted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec7_only_claimed_https_redirects_assure_a_public_client_rfc8252_8_6() {
        use ClientKind::{Dynamic, MetadataDocument as Doc, Static};
        let doc = "https://app.example.com/oauth/client.json";
        for (kind, redirect, assured) in [
            (Doc, "https://app.example.com/cb", true),
            (Doc, "https://app.example.com:8443/cb", false),
            (Doc, "https://other.example.com/cb", false),
            (Doc, "http://127.0.0.1:5000/cb", false),
            (Doc, "com.example.app:/cb", false),
            (Dynamic, "https://app.example.com/cb", true),
            (Static, "https://app.example.com/cb", true),
            (Dynamic, "https://127.0.0.1/cb", false),
            (Dynamic, "https://localhost/cb", false),
            (Dynamic, "http://127.0.0.1:5000/cb", false),
            (Dynamic, "http://app.example.com/cb", false),
            (Dynamic, "com.example.app:/cb", false),
        ] {
            assert_eq!(
                claimed_https_redirect(kind, doc, redirect),
                assured,
                "{kind:?} {redirect}"
            );
        }
    }
}
