//! What blast may call on a tenant's word (webhook URLs, web push endpoints): one place decides.
//!
//! A tenant names a URL and the worker POSTs to it from inside the operator's network, so
//! without a check a tenant could make blast call its metadata service (169.254.169.254), a
//! database on 10.x or a port on loopback (SSRF). The rule: `https:` only (`http:` on a
//! loopback host where `allow_loopback_http`), and the host must be, and resolve to, public
//! addresses only, unless `allow_private_addresses`. Registration checks the URL and its DNS
//! answer; at send time a resolver ([`PublicResolver`]) checks every address reqwest is
//! about to connect to, so a name that resolved to a public address at registration and to
//! 127.0.0.1 later (DNS rebinding) is still refused. IP-literal hosts never reach a resolver;
//! [`check_before_send`] covers them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long a registration waits for the DNS answer about a URL's host.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the operator allows beyond public `https:` destinations, for one kind of URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub allow_loopback_http: bool,
    pub allow_private_addresses: bool,
    /// The settings section that holds these keys (`webhooks`, `webpush`), for error texts.
    pub section: &'static str,
}

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonPublic {
    Unspecified,
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, and IPv6 unique local fc00::/7.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 100.64/10, carrier-grade NAT.
    Shared,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Anything else not routable on the internet: 0/8, 240/4, 192.0.0/24, IPv6 outside
    /// 2000::/3, deprecated site-local, discard-only and protocol-assignment ranges.
    Reserved,
}

impl fmt::Display for NonPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NonPublic::Unspecified => "an unspecified",
            NonPublic::Loopback => "a loopback",
            NonPublic::Private => "a private",
            NonPublic::LinkLocal => "a link-local",
            NonPublic::Shared => "a shared (carrier-grade NAT)",
            NonPublic::Multicast => "a multicast",
            NonPublic::Broadcast => "a broadcast",
            NonPublic::Documentation => "a documentation",
            NonPublic::Benchmarking => "a benchmarking",
            NonPublic::Reserved => "a reserved",
        })
    }
}

/// Why `ip` is not a public internet address, or `None` when it is. IPv6 forms that carry an
/// IPv4 address (`::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by it.
pub fn non_public(ip: IpAddr) -> Option<NonPublic> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<NonPublic> {
    let [a, b, c, d] = ip.octets();
    Some(if ip.is_unspecified() {
        NonPublic::Unspecified
    } else if ip.is_loopback() {
        NonPublic::Loopback
    } else if ip.is_private() {
        NonPublic::Private
    } else if ip.is_link_local() {
        NonPublic::LinkLocal
    } else if a == 100 && (b & 0xc0) == 64 {
        NonPublic::Shared
    } else if ip.is_broadcast() {
        NonPublic::Broadcast
    } else if ip.is_multicast() {
        NonPublic::Multicast
    } else if ip.is_documentation() {
        NonPublic::Documentation
    } else if a == 198 && (b & 0xfe) == 18 {
        NonPublic::Benchmarking
    } else if a == 0 || a >= 240 || ((a, b, c) == (192, 0, 0) && d != 9 && d != 10) {
        // 0/8 "this network", 240/4 reserved, 192.0.0/24 protocol assignments (but for the
        // two anycast addresses in it that are globally routable).
        NonPublic::Reserved
    } else {
        return None;
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<NonPublic> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    // NAT64 (RFC 6052): a gateway forwards it to the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return non_public_v4(embedded(s[6], s[7]));
    }
    // 6to4: a relay forwards it to the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return non_public_v4(embedded(s[1], s[2]));
    }
    Some(if ip.is_unspecified() {
        NonPublic::Unspecified
    } else if ip.is_loopback() {
        NonPublic::Loopback
    } else if ip.is_multicast() {
        NonPublic::Multicast
    } else if (s[0] & 0xfe00) == 0xfc00 {
        NonPublic::Private
    } else if (s[0] & 0xffc0) == 0xfe80 {
        NonPublic::LinkLocal
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        NonPublic::Documentation
    } else if s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0 {
        NonPublic::Benchmarking
    } else if (s[0] & 0xe000) != 0x2000 || (s[0] == 0x2001 && s[1] < 0x0200) {
        // Outside global unicast 2000::/3 (IPv4-compatible ::/96, discard 100::/64,
        // site-local fec0::/10, ...), or IETF protocol assignments 2001::/23 (Teredo,
        // ORCHIDs, ...).
        NonPublic::Reserved
    } else {
        return None;
    })
}

/// Why blast will not call a URL. The texts read after "the webhook URL" / "the endpoint".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("is not a URL: {0}")]
    NotAUrl(String),
    #[error("must be an https: URL, not {0}:")]
    Scheme(String),
    #[error("must name a host")]
    NoHost,
    #[error(
        "is refused: {host} is {kind} address; blast calls only public addresses unless \
         {section}.allow_private_addresses = true"
    )]
    Literal {
        host: String,
        kind: NonPublic,
        section: &'static str,
    },
    #[error(
        "is refused: its host {host} resolves to {addr}, {kind} address; blast calls only \
         public addresses unless {section}.allow_private_addresses = true"
    )]
    Resolved {
        host: String,
        addr: IpAddr,
        kind: NonPublic,
        section: &'static str,
    },
    #[error("is refused: its host {host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

impl OutboundError {
    /// A refusal of the destination itself (not a DNS failure that may pass).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, OutboundError::Unresolvable { .. })
    }
}

/// A URL's host: a name to resolve, or an address (the URL parser has already turned every
/// IPv4 spelling, `0x7f.1` or `2130706433`, into dotted form).
enum Host<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

fn host_of(url: &reqwest::Url) -> Option<Host<'_>> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| Host::Ip(IpAddr::V6(ip)));
    }
    Some(match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(IpAddr::V4(ip)),
        Err(_) => Host::Name(host),
    })
}

/// Whether `host` is loopback by name or address, for `allow_loopback_http`.
fn loopback_host(host: &Host<'_>) -> bool {
    match host {
        Host::Name(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ip(ip) => non_public(*ip) == Some(NonPublic::Loopback),
    }
}

/// The checks that need no DNS: the scheme, and the address of an IP-literal host. Run before
/// every send (reqwest resolves names through [`PublicResolver`], but never IP literals).
pub fn check_before_send(url: &reqwest::Url, policy: &OutboundPolicy) -> Result<(), OutboundError> {
    let host = host_of(url).ok_or(OutboundError::NoHost)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_loopback_http && loopback_host(&host) => {}
        scheme => return Err(OutboundError::Scheme(scheme.to_string())),
    }
    let Host::Ip(ip) = host else {
        return Ok(());
    };
    match non_public(ip) {
        Some(kind) if !policy.allow_private_addresses => Err(OutboundError::Literal {
            host: ip.to_string(),
            kind,
            section: policy.section,
        }),
        _ => Ok(()),
    }
}

/// Check a URL a tenant registers: [`check_before_send`], and where private addresses are
/// not allowed, every address its host resolves to now must be public (and it must resolve).
pub async fn check_at_registration(
    url: &str,
    policy: &OutboundPolicy,
) -> Result<(), OutboundError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| OutboundError::NotAUrl(e.to_string()))?;
    check_before_send(&parsed, policy)?;
    if policy.allow_private_addresses {
        return Ok(());
    }
    let Some(Host::Name(name)) = host_of(&parsed) else {
        return Ok(());
    };
    let addrs = resolve(name).await?;
    public_only(name, addrs, policy.section).map(drop)
}

/// Every address of `name`, from the system resolver.
async fn resolve(name: &str) -> Result<Vec<SocketAddr>, OutboundError> {
    let unresolvable = |reason: String| OutboundError::Unresolvable {
        host: name.to_string(),
        reason,
    };
    let addrs = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| unresolvable(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())))?
        .map_err(|e| unresolvable(e.to_string()))?
        .collect::<Vec<_>>();
    if addrs.is_empty() {
        return Err(unresolvable("no address".into()));
    }
    Ok(addrs)
}

/// The public ones of `addrs`; refused when there are none (naming the first one).
fn public_only(
    name: &str,
    addrs: Vec<SocketAddr>,
    section: &'static str,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let mut refused = None;
    let public: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|addr| match non_public(addr.ip()) {
            Some(kind) => {
                refused.get_or_insert((addr.ip(), kind));
                false
            }
            None => true,
        })
        .collect();
    match refused {
        Some((addr, kind)) if public.is_empty() => Err(OutboundError::Resolved {
            host: name.to_string(),
            addr,
            kind,
            section,
        }),
        _ => Ok(public),
    }
}

/// A reqwest resolver that hands out only the public addresses of a name, and refuses a name
/// that has none (an [`OutboundError`] in the request error's source chain, see
/// [`refusal`]).
#[derive(Debug, Clone)]
pub struct PublicResolver {
    section: &'static str,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let section = self.section;
        Box::pin(async move {
            let name = name.as_str();
            let addrs = resolve(name).await?;
            let public = public_only(name, addrs, section)?;
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// A client builder for URLs under `policy`: unless private addresses are allowed, names
/// resolve through [`PublicResolver`], and no proxy from the environment is used (a proxy
/// resolves the destination itself, out of our sight).
pub fn client_builder(policy: &OutboundPolicy) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    if policy.allow_private_addresses {
        return builder;
    }
    builder.no_proxy().dns_resolver(Arc::new(PublicResolver {
        section: policy.section,
    }))
}

/// The refusal behind a failed request, when [`PublicResolver`] refused its destination.
pub fn refusal(error: &reqwest::Error) -> Option<&OutboundError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<OutboundError>()
            && refused.is_refusal()
        {
            return Some(refused);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<NonPublic> {
        non_public(ip.parse().expect("an address"))
    }

    const STRICT: OutboundPolicy = OutboundPolicy {
        allow_loopback_http: false,
        allow_private_addresses: false,
        section: "webhooks",
    };

    #[test]
    fn every_non_public_ipv4_range_is_named() {
        use NonPublic::*;
        for (ip, want) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.169.254", LinkLocal),
            ("100.64.0.1", Shared),
            ("100.127.255.255", Shared),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("240.0.0.1", Reserved),
            ("192.0.0.1", Reserved),
        ] {
            assert_eq!(kind(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn every_non_public_ipv6_range_is_named_and_embedded_ipv4_counts() {
        use NonPublic::*;
        for (ip, want) in [
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:100.64.1.1", Shared),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("2002:7f00:1::1", Loopback),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("::127.0.0.1", Reserved),
            ("100::1", Reserved),
            ("fec0::1", Reserved),
            ("2001::1", Reserved),
        ] {
            assert_eq!(kind(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "192.0.0.9",
            "198.20.0.1",
            "223.255.255.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:81c::200e",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_without_dns() {
        let check = |url: &str, policy: &OutboundPolicy| {
            check_before_send(&reqwest::Url::parse(url).expect("url"), policy)
        };
        for url in [
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data",
            // The URL parser reads these as 127.0.0.1 too.
            "https://2130706433/x",
            "https://0x7f.1/x",
        ] {
            let refused = check(url, &STRICT);
            assert!(
                matches!(refused, Err(OutboundError::Literal { .. })),
                "{url}: {refused:?}"
            );
        }
        assert!(check("https://8.8.8.8/x", &STRICT).is_ok());
        assert!(check("https://hooks.example.com/x", &STRICT).is_ok());
        assert_eq!(
            check("http://8.8.8.8/x", &STRICT),
            Err(OutboundError::Scheme("http".into()))
        );
        let lenient = OutboundPolicy {
            allow_loopback_http: true,
            allow_private_addresses: true,
            ..STRICT
        };
        assert!(check("http://127.0.0.1:9/x", &lenient).is_ok());
        assert!(check("http://localhost:9/x", &lenient).is_ok());
        assert!(check("https://10.1.2.3/x", &lenient).is_ok());
        assert!(
            check("http://10.1.2.3/x", &lenient).is_err(),
            "http: only on loopback"
        );
        let message = check("https://10.1.2.3/x", &STRICT)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("10.1.2.3 is a private address")
                && message.contains("webhooks.allow_private_addresses = true"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_registration_and_by_the_client() {
        let refused = check_at_registration("https://localhost/x", &STRICT).await;
        assert!(
            matches!(&refused, Err(OutboundError::Resolved { host, kind: NonPublic::Loopback, .. }) if host == "localhost"),
            "{refused:?}"
        );
        let unknown = check_at_registration("https://no-such-host.invalid/x", &STRICT).await;
        assert!(
            matches!(unknown, Err(OutboundError::Unresolvable { .. })),
            "{unknown:?}"
        );
        // A client under the policy refuses to connect, and the refusal can be told apart
        // from a receiver that is down.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = client_builder(&STRICT).build().expect("client");
        let error = client
            .get(format!("https://localhost:{port}/x"))
            .send()
            .await
            .expect_err("refused");
        assert!(
            matches!(refusal(&error), Some(OutboundError::Resolved { .. })),
            "{error:?}"
        );
        let down = reqwest::Client::new()
            .get("http://127.0.0.1:9/x")
            .send()
            .await
            .expect_err("nothing listens on port 9");
        assert!(refusal(&down).is_none());
    }
}
