//! The rules of webhook delivery, without I/O: which targets a webhook may point at, which
//! addresses a delivery may connect to (server-side request forgery), and when a failed
//! delivery is tried again.
//!
//! A target registered by an operator may be anything they allow; one registered by
//! anyone else (a room's owner) must be `https://` and must not reach the server's own
//! network: every address its host resolves to is checked *when connecting*, so a name
//! that resolves somewhere harmless at registration and to `127.0.0.1` later (DNS
//! rebinding) is still refused. An operator's allowlist of networks lets chosen internal
//! addresses through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest target URL, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;

/// Who registered a webhook: what its target may be depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registrant {
    /// An operator (or an admin): any scheme the server speaks, any address.
    Operator,
    /// Anyone else: `https://` only, public addresses only (or the operator's allowlist).
    Restricted,
}

/// A webhook's target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether the scheme is `https`.
    pub https: bool,
    /// The host: a name, or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port (the scheme's default when the URL gives none).
    pub port: u16,
    /// The path and query (`/` when the URL gives none).
    pub path: String,
}

/// Why a target or an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetRefusal {
    /// Not a URL this server can deliver to.
    #[error("not an http(s) URL: {0}")]
    Malformed(&'static str),
    /// A restricted registrant gave a URL that is not `https://`.
    #[error("webhook targets must be https:// URLs")]
    NotHttps,
    /// An address the target may not reach.
    #[error("{addr} is a {kind} address, which webhooks may not reach")]
    Forbidden {
        /// The address.
        addr: IpAddr,
        /// What kind of address it is.
        kind: &'static str,
    },
}

/// Checks a target URL (`http[s]://host[:port][/path]`, no user info, no fragment).
pub fn parse_target(url: &str, by: Registrant, allowed: &[Network]) -> Result<Target, TargetRefusal> {
    if url.len() > MAX_URL_BYTES {
        return Err(TargetRefusal::Malformed("longer than 2,048 bytes"));
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii()) {
        return Err(TargetRefusal::Malformed("spaces, control or non-ASCII characters"));
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(TargetRefusal::Malformed("the scheme must be https:// or http://"));
    };
    if !https && by == Registrant::Restricted {
        return Err(TargetRefusal::NotHttps);
    }
    if url.contains('#') {
        return Err(TargetRefusal::Malformed("a fragment is never sent"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_owned()),
        Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(TargetRefusal::Malformed("user info is not allowed"));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = split_host_port(authority, default_port)?;
    if host.is_empty() {
        return Err(TargetRefusal::Malformed("no host"));
    }
    let host_ok = host.parse::<IpAddr>().is_ok()
        || host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    if !host_ok || host.len() > 253 {
        return Err(TargetRefusal::Malformed("the host is not a name or an IP address"));
    }
    // An address in the URL itself is checked now, as well as at every connection.
    if let Ok(addr) = host.parse::<IpAddr>() {
        check_address(addr, by, allowed)?;
    }
    Ok(Target { https, host: host.to_ascii_lowercase(), port, path })
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), TargetRefusal> {
    let bad_port = TargetRefusal::Malformed("the port is not a number from 1 to 65535");
    let port_of = |text: &str| text.parse::<u16>().ok().filter(|p| *p > 0).ok_or(bad_port.clone());
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) =
            rest.split_once(']').ok_or(TargetRefusal::Malformed("an unclosed [IPv6] host"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(TargetRefusal::Malformed("not an IPv6 address in []"));
        }
        let port = match after.strip_prefix(':') {
            Some(port) => port_of(port)?,
            None if after.is_empty() => default_port,
            None => return Err(TargetRefusal::Malformed("text after the [IPv6] host")),
        };
        return Ok((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), port_of(port)?)),
        None => Ok((authority.to_owned(), default_port)),
    }
}

/// A network in an operator's allowlist (`10.1.2.0/24`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDR/PREFIX` or `ADDR`.
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
            None => {
                let addr = text.parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Network { addr, prefix })
    }

    /// Whether `addr` is in this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Whether a delivery may connect to `addr` (each address a target's name resolves to,
/// checked when connecting).
pub fn check_address(addr: IpAddr, by: Registrant, allowed: &[Network]) -> Result<(), TargetRefusal> {
    if by == Registrant::Operator || allowed.iter().any(|net| net.contains(addr)) {
        return Ok(());
    }
    match kind_of(addr) {
        None => Ok(()),
        Some(kind) => Err(TargetRefusal::Forbidden { addr, kind }),
    }
}

/// What kind of non-public address `addr` is (`None`: a public one).
fn kind_of(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => kind_of_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address in IPv6 clothes is judged as the IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return kind_of_v4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return kind_of_v4(Ipv4Addr::new(a, b, c, d));
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[..6] == [0, 0, 0, 0, 0, 0] {
                Some("IPv4-compatible (deprecated)")
            } else {
                None
            }
        }
    }
}

fn kind_of_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        // 169.254.169.254 is where clouds serve instance metadata and credentials.
        Some("link-local (cloud metadata)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 198 && (18..20).contains(&b) {
        Some("benchmarking")
    } else if a == 192 && b == 0 && c == 0 {
        Some("protocol assignment")
    } else if v4.is_documentation() {
        Some("documentation")
    } else if v4.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

/// When to try a failed delivery again, after `failed` failed attempts (1 after the
/// first): the Standard Webhooks schedule — 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h —
/// stretched by `jitter_permille` (0–1000: up to a tenth longer, so that many endpoints
/// failing together do not retry together). `None`: give up.
pub fn retry_after_ms(failed: u32, jitter_permille: u32) -> Option<u64> {
    const SCHEDULE_SECS: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
    let base = SCHEDULE_SECS.get(usize::try_from(failed).ok()?.checked_sub(1)?)? * 1_000;
    Some(base + base * u64::from(jitter_permille.min(1_000)) / 10_000)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn restricted(url: &str) -> Result<Target, TargetRefusal> {
        parse_target(url, Registrant::Restricted, &[])
    }

    #[test]
    fn targets_parse_into_host_port_and_path() {
        let target = restricted("https://Hooks.Example.com/palaver?x=1").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("hooks.example.com", 443, "/palaver?x=1")
        );
        assert_eq!(restricted("https://example.com").unwrap().path, "/");
        assert_eq!(restricted("https://example.com?q").unwrap().path, "/?q");
        assert_eq!(restricted("https://example.com:8443/h").unwrap().port, 8443);
        let v6 = parse_target("http://[2606:4700::1111]:8080/", Registrant::Operator, &[]).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("2606:4700::1111", 8080));
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https://exa mple.com/",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://[::1/",
            "https:///path",
            "https://-bad.example/",
            "https://ex\u{e4}mple.com/",
        ] {
            assert!(matches!(restricted(bad), Err(TargetRefusal::Malformed(_))), "{bad}");
        }
        assert_eq!(restricted("http://example.com/"), Err(TargetRefusal::NotHttps));
        assert!(parse_target("http://example.com/", Registrant::Operator, &[]).is_ok());
    }

    #[test]
    fn restricted_targets_reach_public_addresses_only() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
        ] {
            let addr: IpAddr = internal.parse().unwrap();
            assert!(check_address(addr, Registrant::Restricted, &[]).is_err(), "{internal}");
            assert!(check_address(addr, Registrant::Operator, &[]).is_ok(), "{internal}: operators may");
        }
        for public in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(check_address(public.parse().unwrap(), Registrant::Restricted, &[]).is_ok(), "{public}");
        }
        let literal = restricted("https://169.254.169.254/latest/meta-data/");
        assert!(matches!(literal, Err(TargetRefusal::Forbidden { .. })), "{literal:?}");
        assert!(matches!(restricted("https://[::ffff:10.0.0.1]/"), Err(TargetRefusal::Forbidden { .. })));
    }

    #[test]
    fn an_operators_allowlist_lets_chosen_networks_through() {
        let allowed = [Network::parse("10.20.0.0/16").unwrap(), Network::parse("fd12::7").unwrap()];
        let check = |addr: &str| check_address(addr.parse().unwrap(), Registrant::Restricted, &allowed);
        assert!(check("10.20.3.4").is_ok() && check("fd12::7").is_ok());
        assert!(check("10.21.0.1").is_err() && check("fd12::8").is_err() && check("127.0.0.1").is_err());
        assert_eq!(Network::parse("10.0.0.0/33"), None);
        assert_eq!(Network::parse("nope"), None);
        assert!(Network::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/9").unwrap().contains("10.127.0.1".parse().unwrap()));
        assert!(!Network::parse("10.0.0.0/9").unwrap().contains("10.128.0.1".parse().unwrap()));
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        assert_eq!(retry_after_ms(0, 0), None);
        assert_eq!(retry_after_ms(1, 0), Some(5_000));
        assert_eq!(retry_after_ms(2, 0), Some(300_000));
        assert_eq!(retry_after_ms(7, 0), Some(36_000_000));
        assert_eq!(retry_after_ms(8, 0), None);
        assert_eq!(retry_after_ms(1, 1_000), Some(5_500), "at most a tenth longer");
        assert_eq!(retry_after_ms(1, 5_000), Some(5_500), "jitter is capped");
    }
}
