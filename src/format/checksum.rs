//! The 6-character checksum: CRC-32 of the random part in fixed-width base 62.

use super::Alphabet;
use core::fmt;

/// Characters in a checksum: 62^6 > 2^32, so every CRC-32 fits.
pub const CHECKSUM_LEN: usize = 6;

/// The last 6 characters of a token: its CRC-32 in base 62.
///
/// Anyone can compute it, so it proves only that a token is well-formed (a cheap filter
/// before any look-up) and identifies a token to people without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum([u8; CHECKSUM_LEN]);

impl Checksum {
    /// The checksum of a random part, written in `alphabet`'s digit order.
    pub fn compute(random: &[u8], alphabet: Alphabet) -> Checksum {
        Checksum::encode(crc32fast::hash(random), alphabet)
    }

    /// `crc` in base 62, left-padded with `0` to 6 characters.
    pub(crate) fn encode(crc: u32, alphabet: Alphabet) -> Checksum {
        let digits = alphabet.digits();
        let mut out = [b'0'; CHECKSUM_LEN];
        let mut n = crc;
        for slot in out.iter_mut().rev() {
            *slot = digits[(n % 62) as usize];
            n /= 62;
        }
        Checksum(out)
    }

    /// Checks `found`, 6 ASCII letters or digits, against the CRC-32 of `random`, without
    /// writing the CRC out: the found digits are read as a number (six independent look-ups
    /// and multiplications) where writing it would take six dependent divisions. Equal
    /// exactly when `found` is `compute(random, alphabet)`: six base-62 digits name each
    /// number below 62⁶ once.
    pub(crate) fn verify(
        random: &[u8],
        found: [u8; CHECKSUM_LEN],
        alphabet: Alphabet,
    ) -> Option<Checksum> {
        let values = match alphabet {
            Alphabet::Dynamic => &DYNAMIC_VALUES,
            Alphabet::GitHub => &GITHUB_VALUES,
        };
        let [a, b, c, d, e, f] = found.map(|digit| u64::from(values[usize::from(digit)]));
        let number =
            a * 62u64.pow(5) + b * 62u64.pow(4) + c * 62u64.pow(3) + d * 62u64.pow(2) + e * 62 + f;
        (number == u64::from(crc32fast::hash(random))).then_some(Checksum(found))
    }

    /// Reads 6 ASCII letters or digits (any digit order).
    pub fn parse(s: &str) -> Result<Checksum, InvalidChecksum> {
        let bytes: [u8; CHECKSUM_LEN] = s.as_bytes().try_into().map_err(|_| InvalidChecksum)?;
        if bytes.iter().all(u8::is_ascii_alphanumeric) {
            Ok(Checksum(bytes))
        } else {
            Err(InvalidChecksum)
        }
    }

    /// The 6 characters.
    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub(crate) fn as_bytes(&self) -> &[u8; CHECKSUM_LEN] {
        &self.0
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.as_str())
    }
}

impl core::str::FromStr for Checksum {
    type Err = InvalidChecksum;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Checksum::parse(s)
    }
}

/// Each byte's value as a digit of `digits`; bytes that are not digits read as 0 (only
/// letters and digits are ever looked up).
const fn digit_values(digits: &[u8; 62]) -> [u8; 256] {
    let mut values = [0u8; 256];
    let mut i = 0;
    while i < digits.len() {
        values[digits[i] as usize] = i as u8;
        i += 1;
    }
    values
}

const DYNAMIC_VALUES: [u8; 256] = digit_values(Alphabet::Dynamic.digits());
const GITHUB_VALUES: [u8; 256] = digit_values(Alphabet::GitHub.digits());

/// A checksum must be exactly 6 ASCII letters or digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid checksum: expected exactly 6 characters from 0-9, a-z, A-Z")]
pub struct InvalidChecksum;

#[cfg(feature = "serde")]
impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Checksum::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encode_writes_base_62_in_the_alphabets_digit_order() {
        // Value 10 is `a` for Dynamic, `A` for GitHub; 36 the other way round.
        let cases = [
            (10, Alphabet::Dynamic, "00000a"),
            (10, Alphabet::GitHub, "00000A"),
            (36, Alphabet::Dynamic, "00000A"),
            (36, Alphabet::GitHub, "00000a"),
            (61, Alphabet::Dynamic, "00000Z"),
            (61, Alphabet::GitHub, "00000z"),
            (62, Alphabet::GitHub, "000010"),
            (0, Alphabet::GitHub, "000000"),
        ];
        for (crc, alphabet, written) in cases {
            assert_eq!(Checksum::encode(crc, alphabet).as_str(), written);
        }
    }

    /// Edge values of the encoder agree with `base62`, padded to 6 characters.
    #[test]
    fn checksum_encoding_edge_values() {
        let p5 = 62u32.pow(5);
        for n in [
            0,
            1,
            9,
            10,
            61,
            62,
            3843,
            3844,
            p5 - 1,
            p5,
            p5 + 1,
            u32::MAX - 1,
            u32::MAX,
        ] {
            assert_eq!(
                Checksum::encode(n, Alphabet::Dynamic).as_str(),
                format!("{:0>6}", base62::encode_alternative(n)),
                "{n}"
            );
            assert_eq!(
                Checksum::encode(n, Alphabet::GitHub).as_str(),
                format!("{:0>6}", base62::encode(n)),
                "{n}"
            );
        }
        assert_eq!(Checksum::encode(0, Alphabet::Dynamic).as_str(), "000000");
        assert_eq!(
            Checksum::encode(u32::MAX, Alphabet::Dynamic).as_str(),
            "4GFfc3"
        );
        assert_eq!(
            Checksum::encode(u32::MAX, Alphabet::GitHub).as_str(),
            "4gfFC3"
        );
    }

    proptest::proptest! {
        /// `Checksum::encode` is `base62` padded with `0` to 6 characters, in both orders, and
        /// decodes back to the same number.
        #[test]
        fn checksum_encode_matches_base62_crate(n in any::<u32>()) {
            let dynamic = Checksum::encode(n, Alphabet::Dynamic);
            let github = Checksum::encode(n, Alphabet::GitHub);
            prop_assert_eq!(dynamic.as_str(), format!("{:0>6}", base62::encode_alternative(n)));
            prop_assert_eq!(github.as_str(), format!("{:0>6}", base62::encode(n)));
            prop_assert_eq!(base62::decode_alternative(dynamic.as_str()).unwrap(), u128::from(n));
            prop_assert_eq!(base62::decode(github.as_str()).unwrap(), u128::from(n));
            prop_assert_eq!(Checksum::parse(dynamic.as_str()).unwrap(), dynamic);
        }
    }
}
