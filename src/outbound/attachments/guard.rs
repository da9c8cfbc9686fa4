//! The SSRF guard: which addresses the server may fetch attachments from, a DNS resolver
//! that refuses names resolving to any other, and the redirect policy that checks each hop.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::{Host, Url};

/// The most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 5;

/// What kind of network an address belongs to, as far as fetching from it is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally reachable address: the only kind fetched by default.
    Public,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, the deprecated site-local `fec0::/10`, local NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `100.64/10`, shared address space behind carrier-grade NAT.
    CarrierGradeNat,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18/15`.
    Benchmarking,
    /// `192.0.0/24`, `2001::/23` (Teredo, ORCHID and the like).
    ProtocolAssignment,
    /// `240/4`, `192.88.99/24`, the discard prefix `100::/64`, and IPv6 outside `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// Whether the address is globally reachable.
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::CarrierGradeNat => "carrier-grade NAT",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::ProtocolAssignment => "IETF protocol assignment",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// IPv4 special ranges, most specific first (broadcast lies inside `240/4`).
const V4_RANGES: &[([u8; 4], u8, AddressClass)] = &[
    ([0, 0, 0, 0], 8, AddressClass::Unspecified),
    ([10, 0, 0, 0], 8, AddressClass::Private),
    ([100, 64, 0, 0], 10, AddressClass::CarrierGradeNat),
    ([127, 0, 0, 0], 8, AddressClass::Loopback),
    ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
    ([172, 16, 0, 0], 12, AddressClass::Private),
    ([192, 0, 0, 0], 24, AddressClass::ProtocolAssignment),
    ([192, 0, 2, 0], 24, AddressClass::Documentation),
    ([192, 88, 99, 0], 24, AddressClass::Reserved),
    ([192, 168, 0, 0], 16, AddressClass::Private),
    ([198, 18, 0, 0], 15, AddressClass::Benchmarking),
    ([198, 51, 100, 0], 24, AddressClass::Documentation),
    ([203, 0, 113, 0], 24, AddressClass::Documentation),
    ([224, 0, 0, 0], 4, AddressClass::Multicast),
    ([255, 255, 255, 255], 32, AddressClass::Broadcast),
    ([240, 0, 0, 0], 4, AddressClass::Reserved),
];

/// IPv6 special ranges that do not embed an IPv4 address.
const V6_RANGES: &[([u16; 8], u8, AddressClass)] = &[
    ([0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0], 48, AddressClass::Private),
    ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, AddressClass::Reserved),
    ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, AddressClass::Documentation),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, AddressClass::ProtocolAssignment),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, AddressClass::Documentation),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, AddressClass::UniqueLocal),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, AddressClass::LinkLocal),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, AddressClass::Private),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, AddressClass::Multicast),
];

/// Classifies an address; IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
/// are judged by the IPv4 address they carry.
pub fn classify_address(address: IpAddr) -> AddressClass {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(address: Ipv4Addr) -> AddressClass {
    let bits = address.to_bits();
    V4_RANGES
        .iter()
        .find(|(base, prefix, _)| in_prefix_v4(bits, Ipv4Addr::from(*base).to_bits(), *prefix))
        .map_or(AddressClass::Public, |(_, _, class)| *class)
}

fn classify_v6(address: Ipv6Addr) -> AddressClass {
    if address.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if address.is_loopback() {
        return AddressClass::Loopback;
    }
    let bits = address.to_bits();
    // The low 32 bits as IPv4, for the prefixes that embed one there.
    let low_v4 = Ipv4Addr::from_bits((bits & 0xffff_ffff) as u32);
    match bits >> 32 {
        // ::a.b.c.d (compatible), ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (translated).
        0 | 0xffff | 0xffff_0000 => return classify_v4(low_v4),
        0x0064_ff9b_0000_0000_0000_0000 => return classify_v4(low_v4),
        _ => {}
    }
    if bits >> 112 == 0x2002 {
        return classify_v4(Ipv4Addr::from_bits(((bits >> 80) & 0xffff_ffff) as u32));
    }
    if let Some((_, _, class)) = V6_RANGES
        .iter()
        .find(|(base, prefix, _)| in_prefix_v6(bits, Ipv6Addr::from(*base).to_bits(), *prefix))
    {
        return *class;
    }
    // Only 2000::/3 is allocated for global unicast.
    if bits >> 125 == 0b001 {
        AddressClass::Public
    } else {
        AddressClass::Reserved
    }
}

fn in_prefix_v4(bits: u32, base: u32, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    bits & mask == base & mask
}

fn in_prefix_v6(bits: u128, base: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    bits & mask == base & mask
}

/// Which addresses attachments may be fetched from.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allow_private_networks: bool,
    trusted: Vec<IpAddr>,
}

impl AddressPolicy {
    /// Public addresses only (the default).
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Any address at all, private networks included.
    pub fn allow_private_networks() -> Self {
        Self {
            allow_private_networks: true,
            trusted: Vec::new(),
        }
    }

    /// The policy `FileSettings::allow_private_networks` asks for.
    pub fn from_settings(settings: &crate::config::FileSettings) -> Self {
        if settings.allow_private_networks {
            Self::allow_private_networks()
        } else {
            Self::public_only()
        }
    }

    /// This policy, also treating `addresses` as public (for tests against a local server).
    #[must_use]
    pub fn trusting(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted.extend(addresses);
        self
    }

    /// Whether private networks are allowed.
    pub fn allows_private_networks(&self) -> bool {
        self.allow_private_networks
    }

    /// Checks one address.
    ///
    /// # Errors
    /// The address's class when the policy refuses it.
    pub fn check(&self, address: IpAddr) -> Result<(), AddressClass> {
        if self.allow_private_networks
            || self.trusted.contains(&address)
            || self.trusted.contains(&address.to_canonical())
        {
            return Ok(());
        }
        match classify_address(address) {
            AddressClass::Public => Ok(()),
            class => Err(class),
        }
    }

    /// Checks a URL about to be fetched (the first one or a redirect target): its scheme,
    /// and its host when that is an IP address. Host names are checked when resolved.
    ///
    /// # Errors
    /// [`GuardRefusal::Scheme`] or [`GuardRefusal::Address`].
    pub fn check_url(&self, url: &Url) -> Result<(), GuardRefusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(GuardRefusal::Scheme {
                scheme: url.scheme().to_owned(),
            });
        }
        let address = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(Host::Domain(_)) | None => return Ok(()),
        };
        self.check(address).map_err(|class| GuardRefusal::Address {
            host: address.to_string(),
            address,
            class,
        })
    }
}

/// Why the guard stopped a fetch. It travels inside reqwest's error (from the resolver or the
/// redirect policy), where the fetcher finds it to tell the client why.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardRefusal {
    /// The host is, or resolves to, an address the policy refuses.
    #[error("{}", describe_address(host, *address, *class))]
    Address {
        /// The host as written in the URL.
        host: String,
        /// The refused address.
        address: IpAddr,
        /// Its class.
        class: AddressClass,
    },
    /// A redirect to a scheme other than http or https.
    #[error("it redirects to a `{scheme}:` URL; only http and https are allowed")]
    Scheme {
        /// The refused scheme.
        scheme: String,
    },
    /// More redirects than [`MAX_REDIRECTS`].
    #[error("it redirects more than {limit} times")]
    TooManyRedirects {
        /// The limit.
        limit: usize,
    },
}

fn describe_address(host: &str, address: IpAddr, class: AddressClass) -> String {
    let subject = if host.trim_start_matches('[').trim_end_matches(']') == address.to_string() {
        format!("address {address}")
    } else {
        format!("address {address} of host {host}")
    };
    format!("{subject} is in the {class} range, which the server may not fetch from")
}

/// The redirect policy of the fetcher: at most [`MAX_REDIRECTS`] hops, each to an http(s)
/// URL whose literal address (if any) the policy allows.
pub fn redirect_policy(policy: Arc<AddressPolicy>) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        // `previous` holds the first URL too, so it is the number of this hop.
        let verdict = if attempt.previous().len() > MAX_REDIRECTS {
            Err(GuardRefusal::TooManyRedirects { limit: MAX_REDIRECTS })
        } else {
            policy.check_url(attempt.url())
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// A resolver that lets a name through only when every address it resolves to passes the
/// policy, and then hands reqwest exactly those addresses to connect to.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// Guards `inner` with `policy`.
    pub fn new(inner: Arc<dyn Resolve>, policy: Arc<AddressPolicy>) -> Self {
        Self { inner, policy }
    }
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let resolving = self.inner.resolve(name);
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = resolving.await?.collect();
            if addresses.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            for address in &addresses {
                policy.check(address.ip()).map_err(|class| GuardRefusal::Address {
                    host: host.clone(),
                    address: address.ip(),
                    class,
                })?;
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified_by_range_and_by_the_ipv4_they_embed() {
        use AddressClass::*;
        let table: &[(&str, AddressClass)] = &[
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("172.15.255.255", Public),
            ("172.32.0.1", Public),
            ("100.63.255.255", Public),
            ("100.128.0.1", Public),
            ("223.255.255.255", Public),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.7", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("100.64.0.1", CarrierGradeNat),
            ("100.127.255.255", CarrierGradeNat),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("192.88.99.1", Reserved),
            ("192.0.0.8", ProtocolAssignment),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("2606:4700:4700::1111", Public),
            ("2a00:1450:4001:80b::200e", Public),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001::1", ProtocolAssignment),
            ("100::1", Reserved),
            ("4000::1", Reserved),
            ("64:ff9b:1::1", Private),
            // IPv4-mapped.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:8.8.8.8", Public),
            // IPv4-compatible.
            ("::127.0.0.1", Loopback),
            ("::192.168.0.1", Private),
            ("::8.8.8.8", Public),
            // IPv4-translated.
            ("::ffff:0:10.1.2.3", Private),
            // NAT64.
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::169.254.169.254", LinkLocal),
            ("64:ff9b::8.8.8.8", Public),
            // 6to4.
            ("2002:0a00:0001::1", Private),
            ("2002:7f00:0001::1", Loopback),
            ("2002:0808:0808::1", Public),
        ];
        for (text, expected) in table {
            let address: IpAddr = text.parse().unwrap();
            assert_eq!(classify_address(address), *expected, "{text}");
        }
    }

    #[test]
    fn the_policy_refuses_non_public_addresses_unless_private_networks_are_allowed() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            AddressPolicy::public_only().check(loopback),
            Err(AddressClass::Loopback)
        );
        assert_eq!(AddressPolicy::public_only().check(public), Ok(()));
        assert_eq!(AddressPolicy::allow_private_networks().check(loopback), Ok(()));
    }

    #[test]
    fn trusted_addresses_pass_in_their_mapped_form_too_and_nothing_else_does() {
        let policy = AddressPolicy::public_only().trusting(["127.0.0.1".parse().unwrap()]);
        assert_eq!(policy.check("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("::ffff:127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("127.0.0.2".parse().unwrap()), Err(AddressClass::Loopback));
    }

    #[test]
    fn urls_are_checked_by_scheme_and_literal_host() {
        let policy = AddressPolicy::public_only();
        let check = |url: &str| policy.check_url(&Url::parse(url).unwrap());
        assert!(check("https://example.com/a.png").is_ok());
        assert!(check("http://8.8.8.8/").is_ok());
        assert!(matches!(check("ftp://example.com/"), Err(GuardRefusal::Scheme { .. })));
        for refused in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.0.0.1./",
            "http://[::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://0/",
        ] {
            assert!(
                matches!(check(refused), Err(GuardRefusal::Address { .. })),
                "{refused} should be refused"
            );
        }
    }
}
