//! SSRF guard for webhook deliveries: a target whose host is, or resolves to, a private,
//! loopback or link-local address is refused unless an operator allowed its network. The
//! check runs when the connection is made (the resolver below hands the HTTP client only
//! addresses it checked), so a name that changes its answer after registration (DNS
//! rebinding) gains nothing. Never follows redirects; never uses a proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` belongs to this machine or a network that is not the public internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240 // 240.0.0.0/4, reserved
                || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10, shared (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // 198.18.0.0/15, benchmarking
                || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24, IETF protocol assignments
        }
        IpAddr::V6(v6) => {
            // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (the old compatible form) reach IPv4.
            if let Some(v4) = v6.to_ipv4() {
                if !v6.is_loopback() && !v6.is_unspecified() {
                    return is_internal(IpAddr::V4(v4));
                }
            }
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // NAT64 (64:ff9b::/96, RFC 6052) and 6to4 (2002::/16, RFC 3056) carry an IPv4
            // address that a gateway would reach.
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_internal(embedded(seg[6], seg[7])) {
                return true;
            }
            if seg[0] == 0x2002 && is_internal(embedded(seg[1], seg[2])) {
                return true;
            }
            let first = seg[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || first & 0xfe00 == 0xfc00 // fc00::/7, unique local
                || first & 0xffc0 == 0xfe80 // fe80::/10, link-local
                || first & 0xffc0 == 0xfec0 // fec0::/10, the old site-local
                || (first == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // 64:ff9b:1::/48, local NAT64
        }
    }
}

/// The rule: an internal address is refused unless one of `allowed` contains it.
pub fn refused(ip: IpAddr, allowed: &[IpNet]) -> bool {
    is_internal(ip) && !allowed.iter().any(|n| n.contains(&ip))
}

/// Checks a target URL before any request: the scheme, and the host when it is an IP literal
/// (the resolver is not asked about those). Names are checked by [`GuardedResolver`].
pub fn check_url(url: &url::Url, allowed: &[IpNet]) -> Result<(), String> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err("only http and https targets are allowed".into());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err("the URL has no host".into()),
    };
    if refused(ip, allowed) {
        return Err(format!(
            "{ip} is a private, loopback or link-local address (events.allow_private_targets)"
        ));
    }
    Ok(())
}

/// Resolves with the system resolver, then refuses the name if any of its addresses is
/// refused: one bad address is enough, or a connection attempt could fall back to it.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allowed: Arc<Vec<IpNet>>,
}

impl GuardedResolver {
    pub fn new(allowed: Vec<IpNet>) -> GuardedResolver {
        GuardedResolver {
            allowed: Arc::new(allowed),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| refused(a.ip(), &allowed)) {
                return Err(format!(
                    "refused: {host} resolves to {}, a private, loopback or link-local address",
                    bad.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client of webhook deliveries: the guarded resolver, no redirects, no proxy, and
/// a timeout for the whole exchange.
pub fn delivery_client(allowed: Vec<IpNet>, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(allowed)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!("portcullis-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_refused_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::a00:5",
            "64:ff9b:1::1",
            "2002:c0a8:0101::1",
            "fec0::1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refused(ip, &[]), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "100.128.0.1",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(!refused(ip.parse().unwrap(), &[]), "{ip}");
        }
        let allowed: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(!refused("127.0.0.1".parse().unwrap(), &allowed));
        assert!(refused("10.0.0.1".parse().unwrap(), &allowed));
    }

    #[test]
    fn literal_targets_are_checked_before_sending() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_url(&url("http://127.0.0.1:8080/hook"), &[]).is_err());
        assert!(check_url(&url("http://[::1]/hook"), &[]).is_err());
        assert!(check_url(&url("https://hooks.example.com/x"), &[]).is_ok());
        assert!(check_url(&url("ftp://hooks.example.com/x"), &[]).is_err());
    }
}
