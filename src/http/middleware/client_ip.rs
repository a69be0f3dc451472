//! The client's IP: the socket peer, unless the peer is a trusted proxy, in which case the
//! right-most address in `Forwarded` / `X-Forwarded-For` that is not itself a trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;

/// The resolved client address, for handlers and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub fn parse_trusted(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

fn trusted(ip: &IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(ip))
}

/// RFC 7239 `for=` values, outermost first (quotes, brackets and ports removed).
fn forwarded_for(header: &str) -> Vec<IpAddr> {
    header
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                if !k.trim().eq_ignore_ascii_case("for") {
                    return None;
                }
                let v = v.trim().trim_matches('"');
                let host = if let Some(rest) = v.strip_prefix('[') {
                    rest.split(']').next()?
                } else {
                    v.split(':').next()?
                };
                host.parse().ok()
            })
        })
        .collect()
}

pub fn resolve(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    xff: Option<&str>,
    proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted(&peer, proxies) {
        return Some(peer);
    }
    let chain: Vec<IpAddr> = match (forwarded, xff) {
        (Some(f), _) => forwarded_for(f),
        (None, Some(x)) => x.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        (None, None) => vec![],
    };
    // Walk from the nearest hop outwards; the first untrusted address is the client.
    Some(
        chain
            .into_iter()
            .rev()
            .find(|ip| !trusted(ip, proxies))
            .unwrap_or(peer),
    )
}

/// Resolves the client address of `req` and records it as [`ClientIp`] request data (called by
/// the edge middleware, [`super::guard::guard`]).
pub fn attach(req: &mut Request, proxies: &[IpNet]) {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let ip = resolve(
        peer,
        header("forwarded"),
        header("x-forwarded-for"),
        proxies,
    );
    if let Some(ip) = ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxies = parse_trusted(&["10.0.0.0/8".into()]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            resolve(Some(outsider), None, Some("198.51.100.1"), &proxies),
            Some(outsider)
        );
        assert_eq!(
            resolve(Some(peer), None, Some("198.51.100.1, 10.9.9.9"), &proxies),
            Some("198.51.100.1".parse().unwrap())
        );
        // A client cannot hide behind a forged left-most entry.
        assert_eq!(
            resolve(Some(peer), None, Some("1.1.1.1, 198.51.100.7"), &proxies),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            resolve(
                Some(peer),
                Some("for=\"[2001:db8::1]:443\";proto=https"),
                None,
                &proxies
            ),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(resolve(Some(peer), None, None, &proxies), Some(peer));
    }
}
