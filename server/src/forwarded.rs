//! The client behind a reverse proxy (nginx, a county gateway). When the TCP peer of a
//! request is one of the configured `trusted_proxies`, the client is the address that proxy
//! names in `X-Forwarded-For`, and `X-Forwarded-Proto: https` says the browser reached the
//! proxy over TLS. From any other peer both headers are ignored: anyone can write them.
//!
//! Everything that needs the client's address (the per-address login throttle, a session's
//! last IP, the audit log) reads axum's `ConnectInfo`, so [`client_address_layer`] replaces
//! that one value and nothing downstream has to know about proxies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::settings::TrustedProxies;

/// Marks a request whose browser spoke HTTPS to a trusted proxy: the console then marks its
/// session cookie `Secure`, as it does when the server itself speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedHttps;

const FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// The client of a request that came from `peer`. Walks `X-Forwarded-For` from its right
/// end (the entry the nearest proxy appended) past every trusted proxy; the first address
/// that is not one is the client. An entry that is not an address ends the walk at the last
/// good one, so a client cannot hide behind a malformed header.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, proxies: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !proxies.contains(peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(address) = forwarded_address(entry) else {
            break;
        };
        client = address;
        if !proxies.contains(address) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:5678`,
/// `[::1]:80`), as some proxies write it.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|address| address.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

/// Whether a trusted proxy says the browser used HTTPS (`X-Forwarded-Proto`; with several
/// values, the first is what the browser spoke to the outermost proxy).
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get(FORWARDED_PROTO)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|scheme| scheme.trim().eq_ignore_ascii_case("https"))
}

/// Request layer: with trusted proxies configured, a request from one of them gets the
/// forwarded client as its `ConnectInfo` (port 0: the client's port is not forwarded) and,
/// when forwarded over HTTPS, the [`ForwardedHttps`] mark.
pub async fn client_address_layer(
    State(proxies): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !proxies.is_empty() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        if let Some(peer) = peer.filter(|peer| proxies.contains(*peer)) {
            let client = client_address(peer, request.headers(), &proxies);
            let https = forwarded_https(request.headers());
            let extensions = request.extensions_mut();
            extensions.insert(ConnectInfo(SocketAddr::new(client, 0)));
            if https {
                extensions.insert(ForwardedHttps);
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list.iter().map(|entry| (*entry).to_owned())).expect("valid list")
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies(&["127.0.0.1"]);
        let headers = forwarded(&["10.1.2.3"]);
        assert_eq!(
            client_address(ip("203.0.113.9"), &headers, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("203.0.113.9"), &headers, &TrustedProxies::default()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_rightmost_address_that_is_not_a_trusted_proxy_is_the_client() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        // A client-written first entry is never believed over what the proxies appended.
        let headers = forwarded(&["198.51.100.1, 203.0.113.7", "10.0.0.5"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &headers, &trusted),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_malformed_entry_stops_the_walk_at_the_last_good_address() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.7, unknown, 10.0.0.5"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &headers, &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &forwarded(&["garbage"]), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1"),
            "no header: the proxy itself"
        );
    }

    #[test]
    fn ports_ipv6_and_mapped_addresses_are_understood() {
        let trusted = proxies(&["127.0.0.1", "::1"]);
        assert_eq!(
            client_address(ip("::1"), &forwarded(&["[2001:db8::7]:4431"]), &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_address(
                ip("::ffff:127.0.0.1"),
                &forwarded(&["203.0.113.7:5000"]),
                &trusted
            ),
            ip("203.0.113.7"),
            "a dual-stack listener's mapped peer is the IPv4 proxy"
        );
    }

    #[test]
    fn https_is_read_from_the_first_forwarded_scheme() {
        let mut headers = HeaderMap::new();
        assert!(!forwarded_https(&headers));
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static("HTTPS, http"));
        assert!(forwarded_https(&headers));
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
        assert!(!forwarded_https(&headers));
    }
}
