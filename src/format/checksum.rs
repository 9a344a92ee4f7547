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
