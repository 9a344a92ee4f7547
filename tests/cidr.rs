//! `Cidr` and `AllowedCidrs` against any input: no panic, one form, and containment as
//! plain integer arithmetic says.

use apitoken::{AllowedCidrs, Cidr, CidrError, MAX_ALLOWED_CIDRS};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Text that is often nearly a range: digits, dots, colons, hex, slashes, and the odd
/// other character.
fn nearly_a_range() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[0-9a-fA-F.:/%ﬀ +x-]{0,50}").unwrap()
}

/// Whether `address` is in `network/prefix`, with the first `prefix` bits compared one by
/// one: the model `Cidr::contains` is checked against.
fn in_range(network: u128, address: u128, prefix: u8, bits: u8) -> bool {
    (0..prefix).all(|i| {
        let bit = bits - 1 - i;
        (network >> bit) & 1 == (address >> bit) & 1
    })
}

fn shows_as_it_reads(range: &Cidr) {
    let shown = range.to_string();
    assert_eq!(Cidr::parse(&shown).as_ref(), Ok(range), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_text_is_read_or_refused_without_panicking(text in any::<String>()) {
        if let Ok(range) = Cidr::parse(&text) {
            shows_as_it_reads(&range);
        }
        let _ = AllowedCidrs::parse(&text);
        let _ = serde_json::from_str::<AllowedCidrs>(&text);
        let _ = serde_json::from_str::<Cidr>(&format!("{text:?}"));
    }

    #[test]
    fn near_misses_are_read_or_refused_with_a_message(text in nearly_a_range()) {
        match Cidr::parse(&text) {
            Ok(range) => shows_as_it_reads(&range),
            Err(e) => prop_assert!(!e.to_string().is_empty() && e.to_string().len() < 400),
        }
        if let Ok(list) = AllowedCidrs::parse(&text) {
            prop_assert!(list.len() >= 1 && list.len() <= MAX_ALLOWED_CIDRS);
            prop_assert_eq!(AllowedCidrs::parse(&list.to_string()), Ok(list));
        }
    }

    #[test]
    fn ipv4_containment_is_bitwise(network in any::<u32>(), address in any::<u32>(), prefix in 0u8..=40) {
        let given = Cidr::new(IpAddr::V4(Ipv4Addr::from(network)), prefix);
        if prefix > 32 {
            let refused = matches!(given, Err(CidrError::Prefix { .. }));
            prop_assert!(refused);
            return Ok(());
        }
        let masked = if prefix == 0 { 0 } else { network & (u32::MAX << (32 - prefix)) };
        match given {
            Ok(_) => prop_assert_eq!(masked, network),
            Err(CidrError::HostBits { network: suggested, .. }) => {
                prop_assert_ne!(masked, network);
                prop_assert_eq!(suggested.network(), IpAddr::V4(Ipv4Addr::from(masked)));
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
        let range = Cidr::new(IpAddr::V4(Ipv4Addr::from(masked)), prefix).unwrap();
        shows_as_it_reads(&range);
        let expected = in_range(u128::from(masked), u128::from(address), prefix, 32);
        let address = Ipv4Addr::from(address);
        prop_assert_eq!(range.contains(IpAddr::V4(address)), expected);
        prop_assert_eq!(range.contains(IpAddr::V6(address.to_ipv6_mapped())), expected);
        prop_assert!(!range.contains(IpAddr::V6(Ipv6Addr::from(u128::from(u32::from(address)) | 1 << 127))));
    }

    #[test]
    fn ipv6_containment_is_bitwise(network in any::<u128>(), address in any::<u128>(), prefix in 0u8..=128) {
        let masked = if prefix == 0 { 0 } else { network & (u128::MAX << (128 - prefix)) };
        let network = Ipv6Addr::from(masked);
        let range = Cidr::new(IpAddr::V6(network), prefix).unwrap();
        shows_as_it_reads(&range);
        let address = Ipv6Addr::from(address);
        if network.to_ipv4_mapped().is_some() && prefix >= 96 {
            // An IPv4-mapped range is the IPv4 range it is.
            prop_assert!(range.network().is_ipv4());
            prop_assert_eq!(range.prefix(), prefix - 96);
        } else if address.to_ipv4_mapped().is_none() {
            let expected = in_range(masked, u128::from(address), prefix, 128);
            prop_assert_eq!(range.contains(IpAddr::V6(address)), expected);
        } else {
            // A mapped client is an IPv4 client: no IPv6 range takes it.
            prop_assert!(!range.contains(IpAddr::V6(address)));
        }
    }

    #[test]
    fn a_range_covers_exactly_the_ranges_inside_it(
        a in any::<u32>(), pa in 0u8..=32, b in any::<u32>(), pb in 0u8..=32,
    ) {
        let make = |n: u32, p: u8| {
            let n = if p == 0 { 0 } else { n & (u32::MAX << (32 - p)) };
            Cidr::new(IpAddr::V4(Ipv4Addr::from(n)), p).unwrap()
        };
        let (outer, inner) = (make(a, pa), make(b, pb));
        let first = inner.network();
        let last = match first {
            IpAddr::V4(n) => IpAddr::V4(Ipv4Addr::from(
                u32::from(n) | u32::MAX.checked_shr(u32::from(pb)).unwrap_or(0),
            )),
            IpAddr::V6(_) => unreachable!(),
        };
        prop_assert_eq!(outer.covers(&inner), outer.contains(first) && outer.contains(last));
    }
}

#[test]
fn a_long_list_in_json_is_refused_at_the_first_range_too_many() {
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("\"10.{}.{}.0/24\"", i / 256 % 256, i % 256))
        .collect();
    let json = format!("[{}]", many.join(","));
    let e = serde_json::from_str::<AllowedCidrs>(&json).unwrap_err();
    assert!(e.to_string().contains("at most 32 ranges"), "{e}");
}
