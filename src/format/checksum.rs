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
    pub fn encode(crc: u32, alphabet: Alphabet) -> Checksum {
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
