//! The client's IP address, for per-client limits: the peer address, or, when the peer is one of
//! the `TRUSTED_PROXIES`, the right-most untrusted address of the forwarding header those proxies
//! write. Reading from the right matters: a client can put anything at the left of
//! `X-Forwarded-For`, but each trusted proxy appends the address it saw, so the first address from
//! the right that no trusted proxy owns is the one that really connected.

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// Which forwarding header the trusted proxies write (`FORWARDED_HEADER`). Only that one is read,
/// so a client cannot smuggle a forged value in through the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            other => Err(format!(
                "{other:?} is not a forwarding header: use `x-forwarded-for` or `forwarded`"
            )),
        }
    }
}

/// Parses `TRUSTED_PROXIES`: comma-separated CIDRs (`10.0.0.0/8`) or single addresses.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is neither a CIDR (10.0.0.0/8) nor an IP address"))
        })
        .collect()
}

/// Finds the client address of requests.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// A resolver believing `header` from `trusted` peers.
    pub fn new(trusted: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self { trusted, header }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address of `req` (`None` only when the peer is unknown).
    pub fn of(&self, req: &ServiceRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        Some(self.resolve(peer, req.headers()))
    }

    /// The client address for a connection from `peer` carrying `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
            ForwardedHeader::Forwarded => forwarded(headers),
        };
        // Walk from the nearest hop outwards; stop at the first address no trusted proxy owns.
        // An unreadable hop ends the walk at the last address we could trust to be real.
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.is_trusted(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every `X-Forwarded-For` entry in order (several headers are one list), `None` for an entry
/// that is not an address.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .flat_map(|v| v.to_str().unwrap_or(",garbage").split(','))
        .map(|item| parse_node(item.trim()))
        .collect()
}

/// Every `for=` node of RFC 7239 `Forwarded` headers in order.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .flat_map(|v| v.to_str().unwrap_or("for=garbage").split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolver(header: ForwardedHeader) -> ClientIpResolver {
        ClientIpResolver::new(
            parse_networks("10.0.0.0/8, 192.168.1.1, fd00::/8").unwrap(),
            header,
        )
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(r.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        // The client forged "6.6.6.6"; the real client 203.0.113.5 reached proxy 10.0.0.2, which
        // reached the last proxy 192.168.1.1, our peer.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.0.0.2")]);
        assert_eq!(r.resolve(ip("192.168.1.1"), &h), ip("203.0.113.5"));
        // Several headers are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.5:4711, 10.0.0.2"),
        ]);
        assert_eq!(r.resolve(ip("10.1.1.1"), &h), ip("203.0.113.5"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let xff = resolver(ForwardedHeader::XForwardedFor);
        let fwd = resolver(ForwardedHeader::Forwarded);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.5"),
            (
                "forwarded",
                "for=198.51.100.7;proto=https, for=\"[2001:db8::17]:4711\"",
            ),
        ]);
        assert_eq!(xff.resolve(ip("10.0.0.1"), &h), ip("203.0.113.5"));
        assert_eq!(fwd.resolve(ip("10.0.0.1"), &h), ip("2001:db8::17"));
    }

    #[test]
    fn garbage_and_all_trusted_chains_fall_back_to_the_nearest_proxy() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "203.0.113.5, not-an-ip, 10.0.0.3")]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.3"));
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.3")]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.7"));
        assert_eq!(r.resolve(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_networks() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(r.resolve(ip("::ffff:10.0.0.2"), &h), ip("203.0.113.5"));
    }

    #[test]
    fn configuration_errors_name_the_bad_item() {
        assert!(
            parse_networks("10.0.0.0/8,nope")
                .unwrap_err()
                .contains("nope")
        );
        assert_eq!(parse_networks(" ").unwrap(), vec![]);
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }
}
