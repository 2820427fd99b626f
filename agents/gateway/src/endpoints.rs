//! Where a job's outputs are fetched from: the endpoints its provider announced on chain
//! (`announceEndpoints`, kept in the market view), then the operator's `--outputs-gateway`.
//!
//! Announced URLs are the provider's choice and the gateway is a server inside someone's
//! network, so by default (SSRF):
//! - only `http(s)://host[:port][/]` URLs are used: no user info, path, query or fragment, so
//!   the only requests made are the fetcher's `GET <url>/ipfs/<cid>` (`?format=car|raw`);
//!   other strings (libp2p multiaddrs such as `/ip4/.../tcp/.../p2p/...`) are skipped;
//! - a host that is, or resolves to, a non-public address (loopback, private, link-local,
//!   shared, documentation, multicast, reserved; IPv4 and IPv6, IPv4-mapped included) is
//!   refused, checked again by the HTTP client's own resolver at connect time (a name that
//!   changes its answer between the check and the connection is still refused);
//! - redirects are not followed;
//! - every fetch is bounded (bytes, files, blocks, depth, deadline) and every block verified.
//!
//! `--allow-private-endpoints` (a devnet, where everything is on loopback) turns the address
//! check off; the URL shape rule and the rest stay. The operator's own `--outputs-gateway` is
//! trusted as configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an announced endpoint is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not an HTTP URL at all (a libp2p multiaddr, junk): skipped without a warning.
    #[error("{0:?} is not an http(s) URL")]
    NotHttp(String),
    /// An HTTP URL with more than a scheme, host and port.
    #[error("{url:?}: {reason}")]
    Shape { url: String, reason: &'static str },
    /// The host is, or resolves to, an address outside the public internet.
    #[error("{url:?}: {host} is {addr}, a {class} address (pass --allow-private-endpoints to fetch from such endpoints)")]
    NonPublic { url: String, host: String, addr: IpAddr, class: &'static str },
    /// The name does not resolve.
    #[error("{url:?}: {host} does not resolve: {reason}")]
    Unresolved { url: String, host: String, reason: String },
}

/// Which addresses outputs may be fetched from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Fetch from loopback, private and other non-public addresses too (a devnet, tests).
    pub allow_private: bool,
}

/// Why `ip` is not a public internet address, or `None` when it is one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared/CGNAT (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation (TEST-NET)",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    };
    Some(class)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // addresses that carry an IPv4 address: judged by it
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4).map(|_| "IPv4-mapped non-public");
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return non_public_v4(v4).map(|_| "NAT64 of a non-public IPv4");
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return non_public_v4(v4).map(|_| "6to4 of a non-public IPv4");
    }
    let class = match s[0] {
        // ::/96 (IPv4-compatible, deprecated) and the rest of ::/8 except :: and ::1 above
        0x0000 => "reserved (::/8)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignment, Teredo included (2001::/23)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x3fff if s[1] < 0x1000 => "documentation (3fff::/20)",
        x if x & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    };
    Some(class)
}

/// The URL of an announced endpoint when its shape is one the gateway fetches from:
/// `http(s)://host[:port]`, with at most a trailing `/`. Returned without the `/`.
pub fn check_shape(endpoint: &str) -> Result<reqwest::Url, Refused> {
    let trimmed = endpoint.trim();
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(Refused::NotHttp(endpoint.to_string()));
    }
    let shape = |reason| Refused::Shape { url: endpoint.to_string(), reason };
    let url = reqwest::Url::parse(trimmed).map_err(|_| shape("not a valid URL"))?;
    if url.host().is_none() {
        return Err(shape("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(shape("user info is not allowed"));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(shape("a path is not allowed (the gateway asks only for /ipfs/<cid>)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(shape("a query or fragment is not allowed"));
    }
    Ok(url)
}

/// The host's addresses, checked against `policy`: all must be public unless allowed. A name
/// that resolves to a mix is refused (a client may pick any of them).
async fn check_host(url: &reqwest::Url, policy: EndpointPolicy) -> Result<(), Refused> {
    if policy.allow_private {
        return Ok(());
    }
    let Some(host) = url.host_str() else {
        return Err(Refused::Shape { url: url.to_string(), reason: "no host" });
    };
    // an address literal (IPv6 in brackets) is checked as it is, with no lookup
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return check_addrs(url, host, [ip]);
    }
    let host = host.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
        .await
        .map_err(|_| Refused::Unresolved { url: url.to_string(), host: host.clone(), reason: "timed out".into() })?
        .map_err(|e| Refused::Unresolved { url: url.to_string(), host: host.clone(), reason: e.to_string() })?;
    let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
    if addrs.is_empty() {
        return Err(Refused::Unresolved { url: url.to_string(), host, reason: "no addresses".into() });
    }
    check_addrs(url, &host, addrs)
}

fn check_addrs(url: &reqwest::Url, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Result<(), Refused> {
    for addr in addrs {
        if let Some(class) = non_public(addr) {
            return Err(Refused::NonPublic { url: url.to_string(), host: host.to_string(), addr, class });
        }
    }
    Ok(())
}

/// How long resolving one endpoint's name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `endpoint` as a source to fetch from under `policy`: its shape, then its addresses.
pub async fn check_endpoint(endpoint: &str, policy: EndpointPolicy) -> Result<String, Refused> {
    let url = check_shape(endpoint)?;
    check_host(&url, policy).await?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The client's resolver: the system's, with non-public addresses dropped (unless allowed), so
/// the connection goes only where [`check_endpoint`] looked, whatever the name answers later.
struct PublicOnly {
    policy: EndpointPolicy,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                .await
                .map_err(|_| format!("resolving {host} timed out"))??;
            let addrs: Vec<SocketAddr> = found.collect();
            if !policy.allow_private {
                if let Some(bad) = addrs.iter().find(|a| non_public(a.ip()).is_some()) {
                    return Err(format!("{host} resolves to the non-public address {}: refused", bad.ip()).into());
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client for fetching from announced endpoints: connect and read timeouts, no
/// redirects, and [`PublicOnly`] resolution.
pub fn client(policy: EndpointPolicy) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("lilypad-gateway/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PublicOnly { policy }))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_ipv4_ranges_are_refused_and_public_ones_kept() {
        for private in [
            "0.0.0.0", "10.1.2.3", "100.64.0.1", "100.127.255.254", "127.0.0.1", "127.8.9.10", "169.254.169.254", "172.16.0.1",
            "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
            "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        ] {
            assert!(non_public(ip(private)).is_some(), "{private} is not public");
        }
        for public in ["1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "192.169.0.1", "198.20.0.1", "223.255.255.255"] {
            assert_eq!(non_public(ip(public)), None, "{public} is public");
        }
    }

    #[test]
    fn non_public_ipv6_ranges_are_refused_and_public_ones_kept() {
        for private in [
            "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::a00:1", "2002:c0a8:101::1",
            "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fec0::1", "ff02::1", "2001:db8::1", "2001::1", "100::1", "3fff::1",
        ] {
            assert!(non_public(ip(private)).is_some(), "{private} is not public");
        }
        for public in ["2606:4700:4700::1111", "2a00:1450:4001:82b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(non_public(ip(public)), None, "{public} is public");
        }
    }

    #[test]
    fn only_bare_http_urls_are_endpoints() {
        assert!(matches!(check_shape("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc"), Err(Refused::NotHttp(_))));
        assert!(matches!(check_shape("/dns4/example.com/tcp/443/wss"), Err(Refused::NotHttp(_))));
        assert!(matches!(check_shape("ftp://example.com"), Err(Refused::NotHttp(_))));
        assert!(matches!(check_shape(""), Err(Refused::NotHttp(_))));
        for bad in ["http://user:pw@example.com", "http://example.com/admin", "http://example.com/?x=1", "http://example.com#f", "http://"] {
            assert!(matches!(check_shape(bad), Err(Refused::Shape { .. })), "{bad}");
        }
        assert_eq!(check_shape("https://outputs.example.com:8443/").unwrap().as_str(), "https://outputs.example.com:8443/");
        assert!(check_shape("http://[2606:4700::1]:8090").is_ok());
    }

    #[tokio::test]
    async fn endpoints_on_non_public_addresses_are_refused_unless_allowed() {
        let strict = EndpointPolicy { allow_private: false };
        let open = EndpointPolicy { allow_private: true };
        for url in ["http://127.0.0.1:8090", "http://[::1]:8090/", "http://10.0.0.5", "http://169.254.169.254", "http://[fd00::1]", "http://localhost:8090"] {
            let refused = check_endpoint(url, strict).await.unwrap_err();
            assert!(matches!(refused, Refused::NonPublic { .. }), "{url}: {refused}");
            assert!(refused.to_string().contains("--allow-private-endpoints"), "{refused}");
            assert_eq!(check_endpoint(url, open).await.unwrap(), url.trim_end_matches('/'), "allowed by the operator");
        }
        assert_eq!(check_endpoint("http://93.184.215.14:8090/", strict).await.unwrap(), "http://93.184.215.14:8090");
        assert!(matches!(check_endpoint("/ip4/10.0.0.1/tcp/4001", open).await, Err(Refused::NotHttp(_))), "a multiaddr even when private ones are allowed");
    }

    #[tokio::test]
    async fn the_client_refuses_to_connect_to_a_name_that_resolves_to_loopback() {
        // a local server that would answer: the client must not reach it by a name
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let app = axum::Router::new().route("/ipfs/{cid}", axum::routing::get(|| async { "served" }));
            axum::serve(listener, app).await.unwrap();
        });
        let url = format!("http://localhost:{port}/ipfs/bafkqaaa");
        let err = client(EndpointPolicy::default()).unwrap().get(&url).send().await.unwrap_err();
        assert!(err.is_connect() || format!("{err:?}").contains("non-public"), "{err:?}");
        let ok = client(EndpointPolicy { allow_private: true }).unwrap().get(&url).send().await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "served");
        server.abort();
    }
}
