//! The `http` task's egress policy: it may not reach loopback, private,
//! link-local (cloud metadata), multicast, unspecified, broadcast or reserved
//! addresses, in IPv4 or IPv6 (IPv4-mapped, -compatible and NAT64 forms
//! included), unless `CRUST_HTTP_ALLOW` lists the address or host name.
//!
//! The check is made on the address actually connected to: host names go
//! through [`PolicyResolver`] (reqwest's DNS hook), which drops refused
//! addresses, so a name that resolves differently the second time (DNS
//! rebinding) cannot slip through. Literal IP URLs, which reqwest connects to
//! without resolving, are checked by [`Egress::check_url`] before the request
//! and in the redirect policy, for every hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{redirect, Url};

/// Most redirects one request follows.
pub const MAX_REDIRECTS: usize = 10;

/// A request the policy refuses; the message is the task's error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// An address block, `10.1.0.0/16` or `fd00::/8` (a bare address is /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address[/prefix]`; IPv6 may be written in brackets.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    /// True when `ip` (IPv4-mapped IPv6 read as IPv4) is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (network, ip, bits) = match (self.network, canonical(ip)) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                (u32::from(network) as u128, u32::from(ip) as u128, 32)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => (u128::from(network), u128::from(ip), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || network >> shift == ip >> shift
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; everything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of internal address `ip` is (e.g. "a loopback address"), or
/// `None` for a public one.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if a == 0 {
        "an unspecified address"
    } else if ip.is_private() {
        "a private address"
    } else if a == 100 && b & 0xc0 == 64 {
        "a private (shared, CGNAT) address"
    } else if ip.is_link_local() {
        "a link-local address"
    } else if ip.is_broadcast() {
        "a broadcast address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if a >= 240 || (a == 192 && b == 0 && c == 0) || (a == 198 && b & 0xfe == 18) {
        "a reserved address"
    } else {
        return None;
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    let segments = ip.segments();
    let low = Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7]));
    // IPv4 inside IPv6: mapped (::ffff:0:0/96), compatible (::/96) and
    // NAT64 (64:ff9b::/96) reach the IPv4 address they carry.
    if ip.to_ipv4_mapped().is_some()
        || segments[..6] == [0; 6]
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        return v4_kind(low);
    }
    let first = segments[0];
    if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        Some("a private address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if first & 0xff00 == 0xff00 {
        Some("a multicast address")
    } else {
        None
    }
}

/// `CRUST_HTTP_ALLOW`: the internal blocks and host names the `http` task may
/// reach anyway. Empty (the default) allows only public addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    networks: Vec<Cidr>,
    hosts: Vec<String>,
}

impl Egress {
    /// Parses a comma-separated list of CIDR blocks, addresses and host names.
    pub fn parse(list: &str) -> Result<Egress, String> {
        let mut egress = Egress::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(cidr) = Cidr::parse(entry) {
                egress.networks.push(cidr);
                continue;
            }
            let host = entry.trim_end_matches('.').to_ascii_lowercase();
            let is_name = !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                // A numeric last label is an address in some spelling
                // (127.1), never a name: list it as an address.
                && !host
                    .rsplit('.')
                    .next()
                    .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
            if !is_name {
                return Err(format!(
                    "{entry:?} is neither a CIDR block (10.0.0.0/8, fd00::/8), an IP address nor a host name"
                ));
            }
            egress.hosts.push(host);
        }
        Ok(egress)
    }

    /// True when `host` is a listed host name.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// Refuses an internal address that no listed block contains; `via` is
    /// the host name it was resolved from, if any.
    pub fn check_ip(&self, ip: IpAddr, via: Option<&str>) -> Result<(), Refused> {
        let Some(kind) = internal_kind(ip) else {
            return Ok(());
        };
        if self.networks.iter().any(|network| network.contains(ip)) {
            return Ok(());
        }
        Err(Refused(match via {
            Some(host) => {
                format!("http: {host} resolves to {ip}, {kind}; allow it with CRUST_HTTP_ALLOW")
            }
            None => format!("http: {ip} is {kind}; allow it with CRUST_HTTP_ALLOW"),
        }))
    }

    /// Checks a URL whose host is a literal address (which reqwest connects
    /// to without resolving); names are checked when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        // The URL parser has already turned every IPv4 spelling (`127.1`,
        // `0x7f000001`, `2130706433`) into dotted decimal.
        let host = url.host_str().unwrap_or_default();
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => self.check_ip(ip, None),
            Err(_) => Ok(()),
        }
    }
}

/// Resolves host names with the system resolver and keeps only the addresses
/// the policy allows; none left is a [`Refused`] error.
struct PolicyResolver {
    egress: Arc<Egress>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.egress.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if egress.allows_host(&host) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let mut refused = None;
            let mut allowed = Vec::with_capacity(found.len());
            for address in found {
                match egress.check_ip(address.ip(), Some(&host)) {
                    Ok(()) => allowed.push(address),
                    Err(err) => {
                        refused.get_or_insert(err);
                    }
                }
            }
            match (allowed.is_empty(), refused) {
                (true, Some(refused)) => Err(Box::new(refused) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The `http` task's client: requests go only where the policy allows, and
/// take at most `timeout` unless the task asks otherwise.
#[derive(Clone)]
pub struct HttpClient {
    pub client: reqwest::Client,
    pub egress: Arc<Egress>,
    /// `CRUST_HTTP_TIMEOUT`: the whole request, body included, when the task
    /// sets no `timeout`.
    pub timeout: Duration,
}

impl HttpClient {
    /// A client that enforces `egress` on every connection and redirect.
    pub fn new(egress: Egress, timeout: Duration) -> reqwest::Result<HttpClient> {
        let egress = Arc::new(egress);
        let hops = egress.clone();
        let redirects = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(Refused(format!(
                    "http: more than {MAX_REDIRECTS} redirects"
                )));
            }
            match hops.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        });
        let client = reqwest::Client::builder()
            .user_agent("crust-worker")
            // A proxy would resolve and connect on our behalf, out of the
            // policy's sight.
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                egress: egress.clone(),
            }))
            .redirect(redirects)
            .timeout(timeout)
            .build()?;
        Ok(HttpClient {
            client,
            egress,
            timeout,
        })
    }

    /// The policy's refusal inside a failed request's error chain, if that
    /// is why it failed.
    pub fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<Refused> {
        let mut current = Some(err);
        while let Some(err) = current {
            if let Some(refused) = err.downcast_ref::<Refused>() {
                return Some(refused.clone());
            }
            current = err.source();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(egress: &Egress, url: &str) -> Option<String> {
        let url = Url::parse(url).unwrap();
        egress.check_url(&url).err().map(|refused| refused.0)
    }

    #[test]
    fn every_spelling_of_an_internal_address_is_refused() {
        let none = Egress::default();
        for (url, shown, kind) in [
            ("http://127.0.0.1/", "127.0.0.1", "a loopback address"),
            ("http://127.1/", "127.0.0.1", "a loopback address"),
            ("http://2130706433/", "127.0.0.1", "a loopback address"),
            ("http://0x7f000001/", "127.0.0.1", "a loopback address"),
            ("http://0177.0.0.1/", "127.0.0.1", "a loopback address"),
            (
                "http://127.255.1.2:8080/",
                "127.255.1.2",
                "a loopback address",
            ),
            ("http://[::1]/", "::1", "a loopback address"),
            (
                "http://[::ffff:127.0.0.1]/",
                "::ffff:127.0.0.1",
                "a loopback address",
            ),
            ("http://[::127.0.0.1]/", "::7f00:1", "a loopback address"),
            (
                "http://[64:ff9b::7f00:1]/",
                "64:ff9b::7f00:1",
                "a loopback address",
            ),
            ("http://0.0.0.0/", "0.0.0.0", "an unspecified address"),
            ("http://0/", "0.0.0.0", "an unspecified address"),
            ("http://[::]/", "::", "an unspecified address"),
            ("http://10.1.2.3/", "10.1.2.3", "a private address"),
            ("http://172.16.0.1/", "172.16.0.1", "a private address"),
            (
                "http://172.31.255.255/",
                "172.31.255.255",
                "a private address",
            ),
            ("http://192.168.1.1/", "192.168.1.1", "a private address"),
            (
                "http://100.64.0.1/",
                "100.64.0.1",
                "a private (shared, CGNAT) address",
            ),
            ("http://[fd00::1]/", "fd00::1", "a private address"),
            ("http://[fc00::1]/", "fc00::1", "a private address"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "169.254.169.254",
                "a link-local address",
            ),
            ("http://[fe80::1]/", "fe80::1", "a link-local address"),
            (
                "http://[::ffff:169.254.169.254]/",
                "::ffff:169.254.169.254",
                "a link-local address",
            ),
            ("http://224.0.0.1/", "224.0.0.1", "a multicast address"),
            ("http://[ff02::1]/", "ff02::1", "a multicast address"),
            (
                "http://255.255.255.255/",
                "255.255.255.255",
                "a broadcast address",
            ),
            ("http://240.0.0.1/", "240.0.0.1", "a reserved address"),
        ] {
            assert_eq!(
                refused(&none, url),
                Some(format!(
                    "http: {shown} is {kind}; allow it with CRUST_HTTP_ALLOW"
                )),
                "{url}"
            );
        }
        // Public addresses and names (checked when resolved) pass here.
        for url in [
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2001:db8::1]/",
            "http://localhost/",
            "https://example.com/",
        ] {
            assert_eq!(refused(&none, url), None, "{url}");
        }
    }

    #[test]
    fn the_allow_list_takes_blocks_addresses_and_names() {
        let egress =
            Egress::parse(" 127.0.0.1/32, 10.0.0.0/8 ,fd00::/8,[::1], Internal.Example. ").unwrap();
        assert_eq!(refused(&egress, "http://127.0.0.1:9/"), None);
        assert_eq!(refused(&egress, "http://[::ffff:127.0.0.1]/"), None);
        assert_eq!(refused(&egress, "http://10.200.3.4/"), None);
        assert_eq!(refused(&egress, "http://[fd12::1]/"), None);
        assert_eq!(refused(&egress, "http://[::1]/"), None);
        assert!(refused(&egress, "http://127.0.0.2/").is_some());
        assert!(refused(&egress, "http://192.168.0.1/").is_some());
        assert!(egress.allows_host("internal.example"));
        assert!(egress.allows_host("INTERNAL.example."));
        assert!(!egress.allows_host("localhost"));
        assert_eq!(Egress::parse("").unwrap(), Egress::default());
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "127.1",
            "exa mple",
            "10.0.0.0/x",
            "a..b",
        ] {
            assert!(Egress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
