//! The client's address, for tokens with allowed ranges: the connection's peer, or, when
//! the peer is a proxy the operator trusts (`--trusted-proxy`), the address that proxy
//! reports in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is read from the right: each proxy appends the address it received
//! the request from, so the rightmost entries are the trusted proxies' own and everything
//! left of the first untrusted entry is whatever the client chose to send. The client is
//! the first entry, from the right, that is not a trusted proxy (or the leftmost, when all
//! are). From a peer that is not a trusted proxy the header is ignored: anyone can send
//! one.
//!
//! A trusted proxy that sends an entry that is not an address (`unknown`, a host name,
//! garbage) is answered 400 `invalid_forwarded_for`: the proxy is misconfigured, and
//! falling back to its own address would judge every client by the proxy's, which a
//! token allowing the proxy's network would then pass. Entries are IP addresses, an IPv6
//! one optionally in brackets, either optionally with a port (`192.0.2.7:5040`,
//! `[2001:db8::7]:443`).

use crate::problem::Problem;
use apitoken::Cidr;
use apitoken::http::ClientAddr;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header::HeaderName};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The proxies whose `X-Forwarded-For` the server believes (none by default).
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies(Arc<[Cidr]>);

impl TrustedProxies {
    pub(crate) fn new(ranges: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies(ranges.into())
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(address))
    }

    /// The client of a request from `peer` with `headers`; `Err` names the entry of a
    /// trusted proxy's `X-Forwarded-For` that is not an address.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, String> {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return Ok(peer);
        }
        let mut client = peer;
        // Several header lines are one list, in order: walk the lines from the last.
        for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let line = line
                .to_str()
                .map_err(|_| "a value that is not text".to_owned())?;
            for entry in line.rsplit(',') {
                let entry = entry.trim_matches([' ', '\t']);
                if entry.is_empty() {
                    // `a,,b` or a trailing comma: nothing was forwarded there.
                    continue;
                }
                let address = parse_entry(entry)
                    .ok_or_else(|| format!("`{}`", entry.chars().take(64).collect::<String>()))?
                    .to_canonical();
                client = address;
                if !self.trusts(address) {
                    return Ok(client);
                }
            }
        }
        Ok(client)
    }
}

/// An address, optionally with a port, an IPv6 one optionally in brackets.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// Middleware: puts the request's [`ClientAddr`] in its extensions for the extractors,
/// from the peer the accept loop recorded ([`crate::logging::Peer`]), or answers 400
/// for a trusted proxy's malformed `X-Forwarded-For`.
pub(crate) async fn client_addr(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(peer) = request.extensions().get::<crate::logging::Peer>().copied() {
        match trusted.client(peer.0.ip(), request.headers()) {
            Ok(client) => {
                request.extensions_mut().insert(ClientAddr(client));
            }
            Err(entry) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_forwarded_for",
                    format!(
                        "X-Forwarded-For from a trusted proxy holds {entry}, not an IP address: configure the proxy to forward the client's address (nginx: proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for)"
                    ),
                )
                .logged()
                .into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|r| r.parse().unwrap()).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(proxies: &TrustedProxies, peer: &str, lines: &[&str]) -> Result<IpAddr, String> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
        }
        proxies.client(ip(peer), &headers)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(
            client(&none, "192.0.2.1", &["10.1.2.3"]),
            Ok(ip("192.0.2.1"))
        );
        assert_eq!(
            client(&none, "192.0.2.1", &["garbage"]),
            Ok(ip("192.0.2.1"))
        );
        let proxies = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            client(&proxies, "192.0.2.1", &["10.1.2.3"]),
            Ok(ip("192.0.2.1"))
        );
        assert_eq!(
            client(&proxies, "::ffff:192.0.2.1", &[]),
            Ok(ip("192.0.2.1")),
            "a mapped peer is its IPv4 address"
        );
    }

    #[test]
    fn a_trusted_proxys_header_is_walked_from_the_right_past_trusted_hops() {
        let proxies = trusted(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        assert_eq!(client(&proxies, "10.0.0.1", &[]), Ok(ip("10.0.0.1")));
        assert_eq!(
            client(&proxies, "10.0.0.1", &["198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
        // The client's own (spoofed) entries left of the first untrusted one are ignored.
        assert_eq!(
            client(&proxies, "10.0.0.1", &["1.1.1.1, 198.51.100.7, 10.0.0.2"]),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            client(
                &proxies,
                "10.0.0.1",
                &["1.1.1.1", "198.51.100.7,10.9.9.9", "2001:db8:ffff::1"]
            ),
            Ok(ip("198.51.100.7")),
            "several lines are one list"
        );
        assert_eq!(
            client(&proxies, "10.0.0.1", &["10.0.0.3, 10.0.0.2"]),
            Ok(ip("10.0.0.3")),
            "every hop trusted: the leftmost"
        );
        assert_eq!(
            client(&proxies, "10.0.0.1", &["[2001:db8::7]:443, 192.0.2.7:5040"]),
            Ok(ip("192.0.2.7"))
        );
        assert_eq!(
            client(&proxies, "10.0.0.1", &["[2001:db8::7]", "::ffff:10.0.0.9"]),
            Ok(ip("2001:db8::7"))
        );
        assert_eq!(
            client(&proxies, "10.0.0.1", &["198.51.100.7,,"]),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn a_trusted_proxys_malformed_entry_is_refused_up_to_the_client() {
        let proxies = trusted(&["10.0.0.0/8"]);
        for bad in [
            "unknown",
            "example.com",
            "10.0.0.1/8",
            "[10.0.0.1]",
            "999.1.1.1",
        ] {
            let refused = client(&proxies, "10.0.0.1", &[bad]);
            assert!(refused.is_err(), "{bad}: {refused:?}");
        }
        // Past the client, the rest is not read: what the client sent is its own affair.
        assert_eq!(
            client(&proxies, "10.0.0.1", &["unknown, 198.51.100.7"]),
            Ok(ip("198.51.100.7"))
        );
        let long = "x".repeat(5_000);
        let refused = client(&proxies, "10.0.0.1", &[&long]).unwrap_err();
        assert!(refused.len() < 100, "{refused}");
    }
}
