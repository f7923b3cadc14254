//! The SSRF-safe fetcher for URLs that clients hand us: client ID metadata documents and
//! `jwks_uri` documents (MCP SPEC A9, A10, C31). HTTPS only; the host is resolved first and every
//! address must be public unless its network is allow-listed for development; the connection
//! goes to the checked addresses only (no second resolution); no redirects, no proxy, a time
//! limit and a size limit; `Cache-Control: max-age` decides how long the result may be kept.
//! Why a fetch failed is for the server log only (security finding 10).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

use crate::config::FetchPolicy;

/// A fetched document.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub body: Vec<u8>,
    /// How long it may be cached (zero: not at all).
    pub cache_for: Duration,
}

/// Why a fetch did not produce a document. The message names the URL (without credentials),
/// the addresses its host resolves to and the resolver's or the transport's complaint: it is
/// for the server log only ([`FetchError::log`]). Clients and users are told no more than that
/// the document could not be fetched, or anyone could map internal names and addresses
/// through the fetcher (security finding 10, MCP SPEC A10).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FetchError(String);

impl FetchError {
    /// Logs why `what` (e.g. "a client ID metadata document") could not be fetched.
    pub(crate) fn log(&self, what: &str) {
        tracing::warn!(error = %self, "{what} could not be fetched");
    }
}

/// Why an address may not be fetched, or `None` when it is public.
pub(crate) fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique local (fc00::/7)")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local (fe80::/10)")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation (2001:db8::/32)")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64: judge the embedded IPv4 address.
                forbidden_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            } else if s[0] == 0x2002 {
                Some("6to4 (2002::/16)")
            } else if v6 == Ipv6Addr::UNSPECIFIED || (s[0] == 0 && s[1] == 0 && s[2] == 0) {
                Some("reserved (::/48)")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback (127.0.0.0/8)")
    } else if ip.is_private() {
        Some("private (RFC 1918)")
    } else if ip.is_link_local() {
        Some("link-local (169.254.0.0/16, cloud metadata)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space (CGNAT, 100.64.0.0/10)")
    } else if o[0] == 0 {
        Some("\"this network\" (0.0.0.0/8)")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_documentation() {
        Some("documentation")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking (198.18.0.0/15)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments (192.0.0.0/24)")
    } else {
        None
    }
}

/// Checks one resolved address against the policy.
fn check_address(policy: &FetchPolicy, url: &str, ip: IpAddr) -> Result<(), FetchError> {
    match forbidden_reason(ip) {
        Some(reason) if !policy.allow_networks.iter().any(|n| n.contains(ip)) => {
            Err(FetchError(format!(
                "refusing to fetch {url}: it resolves to {ip}, a {reason} address (SSRF protection, \
                 MCP SPEC A10; allow-list the network only for development)"
            )))
        }
        _ => Ok(()),
    }
}

/// Fetches `url` under the policy.
pub(crate) async fn fetch(policy: &FetchPolicy, url: &str) -> Result<Fetched, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError(format!("invalid URL: {e}")))?;
    // The URL as the messages name it: without any credentials (refused below, never logged).
    let url = &{
        let mut shown = parsed.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.to_string()
    };
    if parsed.scheme() != "https" {
        return Err(FetchError(format!(
            "refusing to fetch {url}: only https is allowed"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(FetchError(format!(
            "refusing to fetch {url}: it carries credentials"
        )));
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let (domain, addrs): (Option<String>, Vec<SocketAddr>) = match parsed.host() {
        Some(Host::Ipv4(ip)) => (None, vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Ipv6(ip)) => (None, vec![SocketAddr::new(ip.into(), port)]),
        Some(Host::Domain(d)) => {
            let resolved = tokio::time::timeout(policy.timeout, tokio::net::lookup_host((d, port)))
                .await
                .map_err(|_| FetchError(format!("resolving {d} timed out")))?
                .map_err(|e| FetchError(format!("cannot resolve {d}: {e}")))?
                .collect::<Vec<_>>();
            (Some(d.to_owned()), resolved)
        }
        None => return Err(FetchError(format!("refusing to fetch {url}: no host"))),
    };
    if addrs.is_empty() {
        return Err(FetchError(format!("{url}: the host has no address")));
    }
    // Every address must pass: a name that resolves to one public and one private address
    // could otherwise be steered to the private one.
    for a in &addrs {
        check_address(policy, url, a.ip())?;
    }
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout);
    if let Some(d) = &domain {
        builder = builder.resolve_to_addrs(d, &addrs);
    }
    for pem in &policy.extra_root_certs_pem {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| FetchError(format!("bad extra root certificate: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder
        .build()
        .map_err(|e| FetchError(format!("HTTP client: {e}")))?;
    let mut resp = client
        .get(parsed)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| FetchError(format!("fetching {url} failed: {e}")))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(FetchError(format!(
            "fetching {url} returned HTTP {} (redirects are not followed)",
            resp.status().as_u16()
        )));
    }
    let too_big = || FetchError(format!("{url} is larger than {} bytes", policy.max_bytes));
    if resp
        .content_length()
        .is_some_and(|n| n > policy.max_bytes as u64)
    {
        return Err(too_big());
    }
    let cache_for = cache_lifetime(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        policy,
    );
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError(format!("reading {url} failed: {e}")))?
    {
        if body.len() + chunk.len() > policy.max_bytes {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, cache_for })
}

/// The cache lifetime a `Cache-Control` value allows, bounded by the policy.
fn cache_lifetime(cache_control: Option<&str>, policy: &FetchPolicy) -> Duration {
    let Some(cc) = cache_control else {
        return policy.default_cache;
    };
    let mut max_age = None;
    for directive in cc.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age
        .map(Duration::from_secs)
        .unwrap_or(policy.default_cache)
        .min(policy.max_cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a10_private_ranges_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden_reason(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(forbidden_reason(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }

    #[test]
    fn cache_control_is_honoured_within_bounds() {
        let p = FetchPolicy::default();
        assert_eq!(cache_lifetime(None, &p), p.default_cache);
        assert_eq!(
            cache_lifetime(Some("public, max-age=60"), &p),
            Duration::from_secs(60)
        );
        assert_eq!(cache_lifetime(Some("no-store"), &p), Duration::ZERO);
        assert_eq!(cache_lifetime(Some("max-age=99999999"), &p), p.max_cache);
    }

    #[tokio::test]
    async fn a10_loopback_and_metadata_addresses_are_refused() {
        let p = FetchPolicy::default();
        for url in [
            "https://127.0.0.1/client.json",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/c.json",
        ] {
            let e = fetch(&p, url).await.unwrap_err();
            assert!(e.0.contains("SSRF"), "{e}");
        }
        let e = fetch(&p, "http://8.8.8.8/c.json").await.unwrap_err();
        assert!(e.0.contains("only https"), "{e}");
    }

    #[tokio::test]
    async fn sec10_fetch_errors_name_no_credentials() {
        let e = fetch(
            &FetchPolicy::default(),
            "https://user:hunter2@127.0.0.1/c.json",
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("carries credentials"), "{e}");
        assert!(!e.0.contains("hunter2") && !e.0.contains("user"), "{e}");
    }
}
