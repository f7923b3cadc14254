//! Property tests of the parsers in `mcpauth-core`: arbitrary input never panics, and the
//! canonical forms are stable.

use mcpauth_core::authorization_response::{AuthorizationResponse, Expected};
use mcpauth_core::resource::{canonical_resource, check_prm_resource};
use mcpauth_core::well_known::{authorization_server_urls, protected_resource_urls};
use mcpauth_core::{AuthorizationServerMetadata, ProtectedResourceMetadata, TokenResponse};
use proptest::prelude::*;

fn url_strategy() -> impl Strategy<Value = String> {
    (
        prop_oneof!["http", "https", "HTTPS"],
        "[a-zA-Z][a-zA-Z0-9-]{0,10}(\\.[a-z]{2,5})?",
        proptest::option::of(1u16..65535),
        "(/[a-zA-Z0-9._~%-]{0,8}){0,3}/?",
    )
        .prop_map(|(scheme, host, port, path)| match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        })
}

proptest! {
    #[test]
    fn documents_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = TokenResponse::from_json(&bytes);
        let _ = ProtectedResourceMetadata::from_json(&bytes);
        let _ = AuthorizationServerMetadata::from_json_for_issuer(&bytes, "https://as.example");
    }

    #[test]
    fn c19_any_query_is_validated_without_panicking(query in "\\PC{0,120}") {
        let r = AuthorizationResponse::from_query(&query);
        let _ = r.validate(&Expected { state: "s", issuer: "https://as.example", iss_supported: true });
    }

    #[test]
    fn c19_only_the_exact_issuer_passes(iss in "[ -~]{0,40}") {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", "c").append_pair("state", "s").append_pair("iss", &iss).finish();
        let ok = AuthorizationResponse::from_query(&query)
            .validate(&Expected { state: "s", issuer: "https://as.example", iss_supported: true })
            .is_ok();
        prop_assert_eq!(ok, iss == "https://as.example");
    }

    #[test]
    fn c22_canonical_resource_is_idempotent_and_covers_itself(url in url_strategy()) {
        if let Ok(c) = canonical_resource(&url) {
            prop_assert_eq!(canonical_resource(&c).unwrap(), c.clone());
            prop_assert!(check_prm_resource(&c, &url).is_ok(), "{} should cover {}", c, url);
            prop_assert!(!c.contains('#'));
        }
    }

    #[test]
    fn c3_c5_well_known_urls_stay_on_the_origin(url in url_strategy()) {
        if let (Ok(prm), Ok(asm)) = (protected_resource_urls(&url), authorization_server_urls(&url)) {
            let origin = url::Url::parse(&url).unwrap().origin();
            for u in prm.iter().chain(asm.iter().map(|(u, _)| u)) {
                prop_assert_eq!(url::Url::parse(u).unwrap().origin(), origin.clone());
                prop_assert!(u.contains("/.well-known/"));
            }
            prop_assert!(prm.last().unwrap().ends_with("/.well-known/oauth-protected-resource"));
        }
    }
}
