use super::*;

const URL: &str = "https://mcp.example.com/mcp";
const NOW: i64 = 1_800_000_000;

fn key() -> DpopKey {
    DpopKey::generate().unwrap()
}

/// A proof with any header and claims, signed by `key` (to build malformed proofs).
fn sign_raw(key: &DpopKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    format!("{input}.{}", key.sign_for_tests(input.as_bytes()))
}

fn header(key: &DpopKey) -> Value {
    json!({ "typ": PROOF_TYP, "alg": "ES256", "jwk": key.public_jwk() })
}

fn claims() -> Value {
    json!({ "jti": "j1", "htm": "POST", "htu": URL, "iat": NOW })
}

fn check() -> ProofCheck<'static> {
    ProofCheck::new("POST", URL, NOW)
}

fn refused(proof: &str, check: &ProofCheck<'_>) -> DpopError {
    check_proof(&[proof], check).unwrap_err()
}

#[test]
fn d1_a_proof_verifies_and_names_its_key() {
    let k = key();
    let p = k
        .proof_at(
            "POST",
            "https://mcp.example.com/mcp?q=1#f",
            Some("tok"),
            None,
            NOW,
        )
        .unwrap();
    let ok = check_proof(&[&p], &check().with_access_token("tok")).unwrap();
    assert_eq!(ok.jkt, k.thumbprint());
    assert_eq!(ok.iat, NOW);
    assert_eq!(ok.algorithm, JwsAlgorithm::ES256);
    // A fresh jti every time (RFC 9449 §4.2, SPEC D1).
    let again = k.proof_at("POST", URL, Some("tok"), None, NOW).unwrap();
    let ok2 = check_proof(&[&again], &check().with_access_token("tok")).unwrap();
    assert_ne!(ok.jti, ok2.jti);
    assert_eq!(unverified_iat(&p), Some(NOW));
}

#[test]
fn d1_the_key_round_trips_through_pkcs8_and_debug_hides_it() {
    let k = key();
    let der = k.to_pkcs8().unwrap();
    let back = DpopKey::from_pkcs8(&der).unwrap();
    assert_eq!(back.thumbprint(), k.thumbprint());
    assert_eq!(back.public_jwk(), k.public_jwk());
    let shown = format!("{k:?}");
    assert!(shown.contains(k.thumbprint()), "{shown}");
    assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(&der)), "{shown}");
    assert!(DpopKey::from_pkcs8(b"not a key").is_err());
    assert_ne!(key().thumbprint(), k.thumbprint());
}

#[test]
fn rfc7638_thumbprint_of_the_rfc_example_key() {
    // RFC 7638 §3.1.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        jwk_thumbprint(&jwk).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert!(jwk_thumbprint(&json!({"kty": "oct", "k": "c2VjcmV0"})).is_err());
    assert!(jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "a"})).is_err());
    assert!(thumbprint_matches("abc", "abc"));
    assert!(!thumbprint_matches("abc", "abd"));
}

#[test]
fn d4_exactly_one_proof() {
    let k = key();
    let p = k.proof_at("POST", URL, None, None, NOW).unwrap();
    assert_eq!(check_proof(&[], &check()).unwrap_err(), DpopError::Missing);
    assert_eq!(
        check_proof(&[&p, &p], &check()).unwrap_err(),
        DpopError::Multiple
    );
}

#[test]
fn d4_method_and_uri_must_be_the_requests() {
    let k = key();
    let p = k.proof_at("POST", URL, None, None, NOW).unwrap();
    assert_eq!(
        refused(&p, &ProofCheck::new("GET", URL, NOW)),
        DpopError::Method
    );
    assert_eq!(
        refused(
            &p,
            &ProofCheck::new("POST", "https://mcp.example.com/other", NOW)
        ),
        DpopError::Uri
    );
    assert_eq!(
        refused(
            &p,
            &ProofCheck::new("POST", "https://evil.example/mcp", NOW)
        ),
        DpopError::Uri
    );
    // The request's own query is ignored (RFC 9449 §4.3 item 9), syntax normalised.
    assert!(
        check_proof(
            &[&p],
            &ProofCheck::new("POST", "HTTPS://MCP.example.com:443/mcp?a=b", NOW)
        )
        .is_ok()
    );
    // A proof whose htu carries a query or a fragment is refused (RFC 9449 §4.2).
    for htu in [format!("{URL}?a=b"), format!("{URL}#x")] {
        let mut c = claims();
        c["htu"] = json!(htu);
        assert_eq!(
            refused(&sign_raw(&k, &header(&k), &c), &check()),
            DpopError::Uri
        );
    }
}

#[test]
fn d4_iat_must_be_within_the_window() {
    let k = key();
    for iat in [NOW - DEFAULT_IAT_WINDOW - 1, NOW + DEFAULT_IAT_WINDOW + 1] {
        let p = k.proof_at("POST", URL, None, None, iat).unwrap();
        assert_eq!(refused(&p, &check()), DpopError::Iat(DEFAULT_IAT_WINDOW));
    }
    for iat in [NOW - DEFAULT_IAT_WINDOW, NOW + DEFAULT_IAT_WINDOW] {
        let p = k.proof_at("POST", URL, None, None, iat).unwrap();
        assert!(check_proof(&[&p], &check()).is_ok());
    }
}

#[test]
fn d4_ath_must_hash_the_presented_token() {
    let k = key();
    let with = k.proof_at("POST", URL, Some("tok"), None, NOW).unwrap();
    let without = k.proof_at("POST", URL, None, None, NOW).unwrap();
    assert_eq!(
        refused(&with, &check().with_access_token("other")),
        DpopError::AccessTokenHash
    );
    assert_eq!(
        refused(&without, &check().with_access_token("tok")),
        DpopError::AccessTokenHash
    );
    // RFC 9449 §4.2 example: ath of this access token.
    assert_eq!(
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn d4_only_asymmetric_algorithms_and_the_right_typ() {
    let k = key();
    let mut h = header(&k);
    h["typ"] = json!("JWT");
    assert_eq!(
        refused(&sign_raw(&k, &h, &claims()), &check()),
        DpopError::Typ
    );
    for alg in ["none", "HS256", "RS256x", ""] {
        let mut h = header(&k);
        h["alg"] = json!(alg);
        assert!(
            matches!(
                refused(&sign_raw(&k, &h, &claims()), &check()),
                DpopError::Algorithm(_)
            ),
            "{alg}"
        );
    }
    // An algorithm the server does not accept.
    let p = k.proof_at("POST", URL, None, None, NOW).unwrap();
    let mut c = check();
    c.algorithms = &[JwsAlgorithm::EdDSA];
    assert!(matches!(refused(&p, &c), DpopError::Algorithm(_)));
    // An EC key cannot carry RS256.
    let mut h = header(&k);
    h["alg"] = json!("RS256");
    assert!(matches!(
        refused(&sign_raw(&k, &h, &claims()), &check()),
        DpopError::Key(_)
    ));
    // `alg: none` with an empty signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD
            .encode(json!({"typ": PROOF_TYP, "alg": "none", "jwk": k.public_jwk()}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert_eq!(refused(&none, &check()), DpopError::Signature);
}

#[test]
fn d4_a_private_key_or_another_key_is_refused() {
    let k = key();
    let mut h = header(&k);
    h["jwk"]["d"] = json!("c2VjcmV0");
    assert!(
        matches!(refused(&sign_raw(&k, &h, &claims()), &check()), DpopError::Key(m) if m.contains("\"d\""))
    );
    let mut h = header(&k);
    h.as_object_mut().unwrap().remove("jwk");
    assert!(matches!(
        refused(&sign_raw(&k, &h, &claims()), &check()),
        DpopError::Key(_)
    ));
    // Signed by one key, naming another.
    let other = key();
    assert_eq!(
        refused(&sign_raw(&k, &header(&other), &claims()), &check()),
        DpopError::Signature
    );
    // Claims changed after signing.
    let p = k.proof_at("POST", URL, None, None, NOW).unwrap();
    let parts: Vec<&str> = p.split('.').collect();
    let mut c = claims();
    c["htm"] = json!("POST");
    c["jti"] = json!("forged");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_eq!(refused(&forged, &check()), DpopError::Signature);
}

#[test]
fn d4_required_claims_and_malformed_proofs() {
    let k = key();
    for name in ["jti", "htm", "htu", "iat"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        assert_eq!(
            refused(&sign_raw(&k, &header(&k), &c), &check()),
            DpopError::Claim(name),
            "{name}"
        );
    }
    let mut c = claims();
    c["jti"] = json!("x".repeat(MAX_JTI_BYTES + 1));
    assert_eq!(
        refused(&sign_raw(&k, &header(&k), &c), &check()),
        DpopError::Claim("jti")
    );
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        &"a".repeat(MAX_PROOF_BYTES + 1),
    ] {
        assert!(
            matches!(
                refused(bad, &check()),
                DpopError::Malformed(_) | DpopError::Signature
            ),
            "{bad:.20}"
        );
    }
}

#[test]
fn d7_nonces_when_the_server_requires_them() {
    let k = key();
    let nonces = ["n-old", "n-new"];
    let mut c = check();
    c.nonces = &nonces;
    let none = k.proof_at("POST", URL, None, None, NOW).unwrap();
    let stale = k.proof_at("POST", URL, None, Some("n-older"), NOW).unwrap();
    let good = k.proof_at("POST", URL, None, Some("n-new"), NOW).unwrap();
    assert_eq!(refused(&none, &c), DpopError::UseNonce);
    assert_eq!(refused(&stale, &c), DpopError::UseNonce);
    assert_eq!(DpopError::UseNonce.error_code(), "use_dpop_nonce");
    assert_eq!(DpopError::Signature.error_code(), "invalid_dpop_proof");
    assert!(check_proof(&[&good], &c).is_ok());
}

#[test]
fn target_uri_normalises_and_refuses_non_http() {
    assert_eq!(
        target_uri("HTTPS://Example.COM:443/a?b#c").as_deref(),
        Some("https://example.com/a")
    );
    assert_eq!(
        target_uri("http://127.0.0.1:8080").as_deref(),
        Some("http://127.0.0.1:8080/")
    );
    assert_eq!(target_uri("urn:x"), None);
    assert_eq!(target_uri("/relative"), None);
}
