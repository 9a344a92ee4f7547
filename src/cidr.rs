//! [`Cidr`] and [`AllowedCidrs`]: the client addresses a token may be used from.
//!
//! A small type of our own rather than a dependency: parsing, containment and the
//! "is this range inside that one" test of delegation are a few lines each on `u32` and
//! `u128`, and the rules (see [`Cidr`]: host bits refused, IPv4-mapped ranges read as
//! IPv4) are ours to choose.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The most ranges one token's list holds.
pub const MAX_ALLOWED_CIDRS: usize = 32;

/// The longest text [`Cidr::parse`] reads (an IPv6 address in its longest form with a
/// prefix is 49 characters): longer input is refused before it is read.
const MAX_TEXT: usize = 64;

/// A range of IP addresses: a network address with no host bits set and a prefix length.
/// Made only by [`Cidr::new`] and [`Cidr::parse`] (or `FromStr`, or serde, which go
/// through it), so a value always holds a valid range. Displays as `network/prefix`.
///
/// ```
/// use apitoken::Cidr;
/// use std::net::IpAddr;
///
/// let office: Cidr = "10.20.0.0/16".parse()?;
/// assert!(office.contains("10.20.3.4".parse::<IpAddr>()?));
/// assert!(office.contains("::ffff:10.20.3.4".parse::<IpAddr>()?)); // IPv4-mapped
/// assert!(!office.contains("10.21.0.1".parse::<IpAddr>()?));
/// assert_eq!("192.0.2.7".parse::<Cidr>()?.to_string(), "192.0.2.7/32");
/// assert!("10.20.0.1/16".parse::<Cidr>().is_err()); // host bits set
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # What is accepted
///
/// - `10.0.0.0/8`, `2001:db8::/32`: a network and its prefix length, in decimal without
///   leading zeros (`/08` is refused), at most 32 for IPv4 and 128 for IPv6.
/// - `192.0.2.7`, `2001:db8::7`: one address, read as `/32` or `/128`.
/// - Addresses as the standard library reads them: no zone (`%eth0`), no IPv4 octet with a
///   leading zero (`010.0.0.1` could be octal elsewhere).
///
/// Refused: host bits set (`10.0.0.1/8`), which is a typo more often than not (the writer
/// meant `10.0.0.1/32`, and got 16 million addresses): the error names both readings.
///
/// # IPv4 and IPv6
///
/// An address is IPv4 or IPv6, never both: an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`,
/// what a dual-stack socket reports for an IPv4 client) is the IPv4 address, and a range
/// inside `::ffff:0:0/96` is written as the IPv4 range it is (`::ffff:10.0.0.0/104` reads
/// as `10.0.0.0/8`). So an IPv4 client is matched by IPv4 ranges only (`0.0.0.0/0` for any),
/// and an IPv6 client by IPv6 ranges only (`::/0` for any), however the socket reported it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `network` with `prefix` leading bits. Fails when the prefix is longer
    /// than the address ([`CidrError::Prefix`]) or `network` has bits set past it
    /// ([`CidrError::HostBits`]). An IPv4-mapped network with a prefix of 96 or more is
    /// taken as the IPv4 range it is.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let (network, prefix) = match network {
            IpAddr::V6(v6) if (96..=128).contains(&prefix) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (network, prefix),
            },
            _ => (network, prefix),
        };
        let max = max_prefix(network);
        if prefix > max {
            return Err(CidrError::Prefix {
                input: format!("{network}/{prefix}"),
                max,
            });
        }
        let masked = mask(network, prefix);
        if masked != network {
            return Err(CidrError::HostBits {
                input: format!("{network}/{prefix}"),
                network: Cidr {
                    network: masked,
                    prefix,
                },
                address: Cidr {
                    network,
                    prefix: max,
                },
            });
        }
        Ok(Cidr { network, prefix })
    }

    /// Reads `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`: `/32`); see [`Cidr`] for
    /// what is accepted. Never panics, whatever
    /// the input.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let syntax = || CidrError::Syntax { input: shown(text) };
        if text.len() > MAX_TEXT {
            return Err(syntax());
        }
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| syntax())?;
        let prefix = match prefix {
            None => max_prefix(network),
            Some(digits) => parse_prefix(digits).ok_or_else(|| CidrError::Prefix {
                input: shown(text),
                max: max_prefix(network),
            })?,
        };
        Cidr::new(network, prefix).map_err(|e| match e {
            // Name the range as it was written.
            CidrError::Prefix { max, .. } => CidrError::Prefix {
                input: shown(text),
                max,
            },
            CidrError::HostBits {
                network, address, ..
            } => CidrError::HostBits {
                input: shown(text),
                network,
                address,
            },
            other => other,
        })
    }

    /// The network address (no host bits set).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length: 0 to 32 for IPv4, 0 to 128 for IPv6.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `address` is in the range. An IPv4-mapped IPv6 address is taken as the
    /// IPv4 address it maps. Allocates nothing.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                u32::from(address) & mask32(self.prefix) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                u128::from(address) & mask128(self.prefix) == u128::from(network)
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in this range (`other` is this range or a
    /// narrower one inside it).
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
    }
}

/// 1 to 3 decimal digits, no leading zero (but `0` itself), at most 255.
fn parse_prefix(digits: &str) -> Option<u8> {
    let bytes = digits.as_bytes();
    if bytes.is_empty()
        || bytes.len() > 3
        || !bytes.iter().all(u8::is_ascii_digit)
        || (bytes.len() > 1 && bytes[0] == b'0')
    {
        return None;
    }
    digits.parse().ok()
}

/// At most [`MAX_TEXT`] characters of `text`, for an error message.
fn shown(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

/// A token's allowlist: 1 to [`MAX_ALLOWED_CIDRS`] ranges, in the order given. A token
/// with one authenticates only from an address in one of them
/// ([`TokenIssuer::authenticate_from`](crate::TokenIssuer::authenticate_from)); a token
/// without one (`None` where a record holds an `Option<AllowedCidrs>`) from anywhere.
///
/// There is no empty list: "no address may use it" is what revoking says, and an empty
/// list read as "any address" would be one typo from the opposite. Cloning bumps a
/// reference count.
///
/// ```
/// use apitoken::{AllowedCidrs, Cidr};
///
/// let office = AllowedCidrs::new(["10.0.0.0/8".parse::<Cidr>()?, "2001:db8::/32".parse()?])?;
/// assert!(office.contains("10.1.2.3".parse()?));
/// assert!(office.contains("2001:db8::1".parse()?));
/// assert!(!office.contains("192.0.2.1".parse()?));
/// assert!(AllowedCidrs::new([]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AllowedCidrs(Arc<[Cidr]>);

impl AllowedCidrs {
    /// The list of `ranges`: [`CidrError::Empty`] for none, [`CidrError::TooMany`] for
    /// more than [`MAX_ALLOWED_CIDRS`].
    pub fn new(ranges: impl IntoIterator<Item = Cidr>) -> Result<AllowedCidrs, CidrError> {
        let mut list = Vec::new();
        for (count, range) in ranges.into_iter().enumerate() {
            if count == MAX_ALLOWED_CIDRS {
                return Err(CidrError::TooMany {
                    max: MAX_ALLOWED_CIDRS,
                });
            }
            list.push(range);
        }
        if list.is_empty() {
            return Err(CidrError::Empty);
        }
        Ok(AllowedCidrs(list.into()))
    }

    /// Reads ranges separated by ASCII whitespace or commas (`"10.0.0.0/8 192.0.2.7"`),
    /// each as [`Cidr::parse`] does.
    pub fn parse(text: &str) -> Result<AllowedCidrs, CidrError> {
        let mut error = None;
        let ranges = text
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|part| !part.is_empty())
            .map_while(|part| match Cidr::parse(part) {
                Ok(range) => Some(range),
                Err(e) => {
                    error = Some(e);
                    None
                }
            });
        let list = AllowedCidrs::new(ranges);
        match error {
            Some(e) => Err(e),
            None => list,
        }
    }

    /// Whether `address` is in one of the ranges (see [`Cidr::contains`]). Allocates
    /// nothing.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(address))
    }

    /// The ranges of `narrower` that no range of this list covers: empty when every
    /// address `narrower` allows, this list allows too.
    pub fn not_covered(&self, narrower: &AllowedCidrs) -> Vec<Cidr> {
        narrower
            .0
            .iter()
            .filter(|child| !self.0.iter().any(|range| range.covers(child)))
            .copied()
            .collect::<Vec<Cidr>>()
    }

    /// The ranges, in the order given.
    pub fn as_slice(&self) -> &[Cidr] {
        &self.0
    }

    /// An iterator over the ranges.
    pub fn iter(&self) -> core::slice::Iter<'_, Cidr> {
        self.0.iter()
    }

    /// How many ranges (1 to [`MAX_ALLOWED_CIDRS`]).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'a> IntoIterator for &'a AllowedCidrs {
    type Item = &'a Cidr;
    type IntoIter = core::slice::Iter<'a, Cidr>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The ranges separated by single spaces: what [`AllowedCidrs::parse`] reads back.
impl fmt::Display for AllowedCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            fmt::Display::fmt(range, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for AllowedCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl FromStr for AllowedCidrs {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AllowedCidrs::parse(s)
    }
}

/// Why a range or an allowlist was refused. Each message says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// Not an address, nor an address and a prefix.
    #[error(
        "`{input}` is not an IP range: write a network and a prefix length such as 10.0.0.0/8 or 2001:db8::/32, or one address such as 192.0.2.7"
    )]
    Syntax {
        /// The text (at most 64 characters of it).
        input: String,
    },
    /// The prefix length is not a number from 0 to the address's length.
    #[error(
        "`{input}`: the prefix length must be a whole number from 0 to {max}, without leading zeros"
    )]
    Prefix {
        /// The range as written (at most 64 characters of it).
        input: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set past the prefix.
    #[error(
        "`{input}` has host bits set: write {network} for the whole network, or {address} for the one address"
    )]
    HostBits {
        /// The range as written.
        input: String,
        /// The network it lies in.
        network: Cidr,
        /// The one address.
        address: Cidr,
    },
    /// An empty list.
    #[error(
        "an empty list of allowed ranges would allow no address: give at least one range, or no list to allow any address"
    )]
    Empty,
    /// Too many ranges.
    #[error("a token allows at most {max} ranges: merge neighbouring ones into a wider range")]
    TooMany {
        /// [`MAX_ALLOWED_CIDRS`].
        max: usize,
    },
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{AllowedCidrs, Cidr, CidrError, MAX_ALLOWED_CIDRS};
    use core::fmt;
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for Cidr {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for Cidr {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Cidr::parse(&text).map_err(de::Error::custom)
        }
    }

    /// An array of strings.
    impl Serialize for AllowedCidrs {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter())
        }
    }

    /// An array of 1 to [`MAX_ALLOWED_CIDRS`] strings: reading stops at the first one too
    /// many, so a huge array is refused without being read whole.
    impl<'de> Deserialize<'de> for AllowedCidrs {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct List;
            impl<'de> Visitor<'de> for List {
                type Value = AllowedCidrs;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    write!(
                        f,
                        "an array of 1 to {MAX_ALLOWED_CIDRS} IP ranges such as \"10.0.0.0/8\""
                    )
                }
                fn visit_seq<A: SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<AllowedCidrs, A::Error> {
                    let mut list = Vec::new();
                    while let Some(range) = seq.next_element::<Cidr>()? {
                        if list.len() == MAX_ALLOWED_CIDRS {
                            return Err(de::Error::custom(CidrError::TooMany {
                                max: MAX_ALLOWED_CIDRS,
                            }));
                        }
                        list.push(range);
                    }
                    AllowedCidrs::new(list).map_err(de::Error::custom)
                }
            }
            d.deserialize_seq(List)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_read_and_show_in_one_form() {
        for (given, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("192.0.2.7/32", "192.0.2.7/32"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:0db8:0000::/32", "2001:db8::/32"),
            ("2001:db8::7", "2001:db8::7/128"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.0.2.7", "192.0.2.7/32"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
            ("::fffe:0:0/95", "::fffe:0:0/95"),
        ] {
            assert_eq!(cidr(given).to_string(), shown, "{given}");
            assert_eq!(cidr(shown), cidr(given));
        }
    }

    #[test]
    fn malformed_ranges_are_refused_with_what_to_write() {
        for bad in [
            "",
            "/",
            "10.0.0.0/",
            "/8",
            "10.0.0/8",
            "010.0.0.0/8",
            "10.0.0.0/8/8",
            "10.0.0.0 /8",
            " 10.0.0.0/8",
            "fe80::1%eth0/128",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "localhost",
            "10.0.0.0/8\n",
        ] {
            assert!(
                matches!(
                    Cidr::parse(bad),
                    Err(CidrError::Syntax { .. } | CidrError::Prefix { .. })
                ),
                "{bad:?}"
            );
        }
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/08",
            "2001:db8::/129",
            "10.0.0.0/256",
            "10.0.0.0/1000",
        ] {
            assert!(
                matches!(Cidr::parse(bad), Err(CidrError::Prefix { .. })),
                "{bad}"
            );
        }
        let e = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`10.1.2.3/8` has host bits set: write 10.0.0.0/8 for the whole network, or 10.1.2.3/32 for the one address"
        );
        assert!(matches!(
            Cidr::parse("2001:db8::1/32"),
            Err(CidrError::HostBits { .. })
        ));
        let long = "1".repeat(10_000);
        let e = Cidr::parse(&long).unwrap_err();
        assert!(e.to_string().len() < 300);
    }

    #[test]
    fn containment_keeps_ipv4_and_ipv6_apart_and_reads_mapped_addresses_as_ipv4() {
        let v4 = cidr("10.20.0.0/16");
        assert!(v4.contains(ip("10.20.0.0")));
        assert!(v4.contains(ip("10.20.255.255")));
        assert!(!v4.contains(ip("10.21.0.0")));
        assert!(!v4.contains(ip("10.19.255.255")));
        assert!(v4.contains(ip("::ffff:10.20.1.1")));
        assert!(!v4.contains(ip("::a14:101"))); // IPv4-compatible, not mapped: IPv6
        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.20.1.1")));
        assert!(cidr("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
        assert!(!cidr("::/0").contains(ip("::ffff:1.2.3.4")));
        assert!(!cidr("::/0").contains(ip("1.2.3.4")));
        assert!(cidr("::/0").contains(ip("::1")));
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
    }

    #[test]
    fn a_range_covers_itself_and_narrower_ranges_inside_it() {
        let wide = cidr("10.0.0.0/8");
        assert!(wide.covers(&wide));
        assert!(wide.covers(&cidr("10.20.0.0/16")));
        assert!(wide.covers(&cidr("10.255.255.255")));
        assert!(!wide.covers(&cidr("0.0.0.0/0")));
        assert!(!wide.covers(&cidr("11.0.0.0/16")));
        assert!(!wide.covers(&cidr("2001:db8::/32")));
        assert!(cidr("::/0").covers(&cidr("2001:db8::/32")));
        assert!(!cidr("::/0").covers(&cidr("10.0.0.0/8")));
        let parent = AllowedCidrs::parse("10.0.0.0/8, 2001:db8::/32").unwrap();
        let child = AllowedCidrs::parse("10.1.0.0/16 192.0.2.0/24 2001:db8:1::/48").unwrap();
        assert_eq!(parent.not_covered(&child), [cidr("192.0.2.0/24")]);
        assert!(parent.not_covered(&parent).is_empty());
    }

    #[test]
    fn lists_hold_one_to_32_ranges() {
        assert_eq!(AllowedCidrs::new([]), Err(CidrError::Empty));
        assert_eq!(AllowedCidrs::parse(" , "), Err(CidrError::Empty));
        let many = (0..33).map(|i| cidr(&format!("10.0.{i}.0/24")));
        assert_eq!(AllowedCidrs::new(many.clone().take(32)).unwrap().len(), 32);
        assert_eq!(AllowedCidrs::new(many), Err(CidrError::TooMany { max: 32 }));
        let list = AllowedCidrs::parse("10.0.0.0/8,192.0.2.7 2001:db8::/32").unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/8 192.0.2.7/32 2001:db8::/32");
        assert_eq!(AllowedCidrs::parse(&list.to_string()), Ok(list));
        assert!(matches!(
            AllowedCidrs::parse("10.0.0.0/8 nonsense"),
            Err(CidrError::Syntax { .. })
        ));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_is_an_array_of_strings() {
        let list: AllowedCidrs = serde_json::from_str(r#"["10.0.0.0/8", "2001:db8::7"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#"["10.0.0.0/8","2001:db8::7/128"]"#
        );
        for bad in [
            r#"[]"#,
            r#"["10.0.0.1/8"]"#,
            r#""10.0.0.0/8""#,
            r#"[8]"#,
            "null",
        ] {
            assert!(serde_json::from_str::<AllowedCidrs>(bad).is_err(), "{bad}");
        }
        let many = format!("[{}]", vec![r#""10.0.0.0/8""#; 33].join(","));
        let e = serde_json::from_str::<AllowedCidrs>(&many).unwrap_err();
        assert!(e.to_string().contains("at most 32"), "{e}");
    }
}
