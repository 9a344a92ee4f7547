//! [`TokenFormat`]: `{prefix}_{random}{checksum}`, generated and parsed.
//!
//! A token is a prefix, an underscore, `random_len` characters drawn uniformly from
//! `0-9a-zA-Z`, and a 6-character checksum: the CRC-32 (zlib variant) of the random
//! characters' ASCII bytes, in base 62 in the format's digit order, left-padded with `0`.
//!
//! ```
//! use apitoken::TokenFormat;
//!
//! let format = TokenFormat::dynamic();
//! let parsed = format.parse("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC")?;
//! assert_eq!(parsed.checksum().as_str(), "4n3LFC");
//!
//! let err = format.parse("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LF").unwrap_err();
//! assert_eq!(err.to_string(), "expected 36 characters after `dyn_`, got 35");
//! # Ok::<(), apitoken::FormatError>(())
//! ```

mod alphabet;
pub(crate) mod checksum;
pub(crate) mod limits;

pub use alphabet::{Alphabet, UnknownAlphabet};
pub use checksum::{CHECKSUM_LEN, Checksum, InvalidChecksum};
pub use limits::{MAX_PREFIX_LEN, MAX_RANDOM_LEN, MAX_TOKEN_LEN, MIN_RANDOM_LEN};

use crate::secret::RawToken;
use core::fmt;

/// A token prefix such as `dyn` or `ghp`: 1 to 16 ASCII letters and digits, starting
/// with a letter. The underscore that follows it is not part of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    bytes: [u8; MAX_PREFIX_LEN],
    len: u8,
}

impl Prefix {
    /// Checks and wraps a prefix.
    pub(crate) const fn new(s: &str) -> Result<Prefix, FormatConfigError> {
        let src = s.as_bytes();
        if src.is_empty() || src.len() > MAX_PREFIX_LEN {
            return Err(FormatConfigError::PrefixLength { found: src.len() });
        }
        if !src[0].is_ascii_alphabetic() {
            return Err(FormatConfigError::PrefixStart);
        }
        let mut bytes = [0u8; MAX_PREFIX_LEN];
        let mut i = 0;
        while i < src.len() {
            if !src[i].is_ascii_alphanumeric() {
                return Err(FormatConfigError::PrefixCharacter { position: i + 1 });
            }
            bytes[i] = src[i];
            i += 1;
        }
        Ok(Prefix {
            bytes,
            len: src.len() as u8,
        })
    }

    /// The prefix, without the underscore.
    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({})", self.as_str())
    }
}

/// How tokens look: prefix, digit order and number of random characters.
///
/// Cheap to copy; [`TokenFormat::dynamic`] is the default.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenFormat {
    prefix: Prefix,
    alphabet: Alphabet,
    random_len: u8,
}

impl Default for TokenFormat {
    fn default() -> Self {
        TokenFormat::dynamic()
    }
}

impl fmt::Debug for TokenFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenFormat")
            .field("prefix", &self.prefix.as_str())
            .field("alphabet", &self.alphabet)
            .field("random_len", &self.random_len)
            .finish()
    }
}

impl TokenFormat {
    /// Dynamic's environment API tokens: `dyn_`, 30 random characters in the order
    /// `0-9a-zA-Z`, 6 checksum characters (40 characters in all).
    pub const fn dynamic() -> TokenFormat {
        // Checked at compile time.
        const DYN: Prefix = match Prefix::new("dyn") {
            Ok(prefix) => prefix,
            Err(_) => panic!("`dyn` is a valid prefix"),
        };
        TokenFormat {
            prefix: DYN,
            alphabet: Alphabet::Dynamic,
            random_len: 30,
        }
    }

    /// GitHub's classic token format (`ghp_`, `gho_`, `npm_`, …): the caller's prefix, 30
    /// random characters, digit order `0-9A-Za-z`.
    pub const fn github(prefix: &str) -> Result<TokenFormat, FormatConfigError> {
        match Prefix::new(prefix) {
            Ok(prefix) => Ok(TokenFormat {
                prefix,
                alphabet: Alphabet::GitHub,
                random_len: 30,
            }),
            Err(e) => Err(e),
        }
    }

    /// Any format: `random_len` must be 22 to 64.
    pub fn new(
        prefix: &str,
        alphabet: Alphabet,
        random_len: usize,
    ) -> Result<TokenFormat, FormatConfigError> {
        TokenFormat::dynamic()
            .with_prefix(prefix)?
            .with_alphabet(alphabet)
            .with_random_len(random_len)
    }

    /// The same format with another prefix.
    pub fn with_prefix(self, prefix: &str) -> Result<TokenFormat, FormatConfigError> {
        Ok(TokenFormat {
            prefix: Prefix::new(prefix)?,
            ..self
        })
    }

    /// The same format with another digit order.
    pub fn with_alphabet(self, alphabet: Alphabet) -> TokenFormat {
        TokenFormat { alphabet, ..self }
    }

    /// The same format with another number of random characters (22 to 64).
    pub fn with_random_len(self, random_len: usize) -> Result<TokenFormat, FormatConfigError> {
        if !(MIN_RANDOM_LEN..=MAX_RANDOM_LEN).contains(&random_len) {
            return Err(FormatConfigError::RandomLength { found: random_len });
        }
        Ok(TokenFormat {
            random_len: random_len as u8,
            ..self
        })
    }

    /// The prefix, without the underscore.
    pub fn prefix(&self) -> &str {
        self.prefix.as_str()
    }

    /// The digit order.
    pub fn alphabet(&self) -> Alphabet {
        self.alphabet
    }

    /// How many random characters a token has.
    pub fn random_len(&self) -> usize {
        usize::from(self.random_len)
    }

    /// How many characters follow `{prefix}_`: random part and checksum.
    pub fn body_len(&self) -> usize {
        self.random_len() + CHECKSUM_LEN
    }

    /// The length of a whole token.
    pub fn token_len(&self) -> usize {
        usize::from(self.prefix.len) + 1 + self.body_len()
    }

    /// Bits of entropy in the random part: `random_len × log2(62)`.
    pub fn entropy_bits(&self) -> f64 {
        self.random_len() as f64 * 62f64.log2()
    }

    /// Generates a token: each random character is drawn uniformly with `rng`.
    ///
    /// ```
    /// use apitoken::TokenFormat;
    ///
    /// let format = TokenFormat::dynamic();
    /// let token = format.generate(&mut rand::rng());
    /// assert!(format.parse(token.expose_secret()).is_ok());
    /// ```
    pub fn generate<R>(&self, rng: &mut R) -> RawToken
    where
        R: rand_core::CryptoRng + ?Sized,
    {
        let mut buf = [0u8; MAX_TOKEN_LEN];
        let prefix = self.prefix.as_bytes();
        let start = prefix.len() + 1;
        let end = start + self.random_len();
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()] = b'_';
        alphabet::fill_uniform(rng, self.alphabet.digits(), &mut buf[start..end]);
        let checksum = Checksum::compute(&buf[start..end], self.alphabet);
        buf[end..end + CHECKSUM_LEN].copy_from_slice(checksum.as_bytes());
        RawToken::from_parts(buf, end + CHECKSUM_LEN, prefix.len(), checksum)
    }

    /// Checks that `s` is a token of this format: prefix, length, characters and
    /// checksum, in that order. Allocates nothing and does no I/O; the time taken does not
    /// grow with the length of a wrong-length input.
    pub fn parse<'a>(&self, s: &'a str) -> Result<ParsedToken<'a>, FormatError> {
        let prefix = self.prefix.as_bytes();
        let bytes = s.as_bytes();
        let body = match bytes.strip_prefix(prefix) {
            Some([b'_', body @ ..]) => body,
            _ if bytes.is_empty() => {
                return Err(FormatError::Empty {
                    prefix: self.prefix,
                    expected: self.body_len(),
                });
            }
            _ => {
                return Err(FormatError::WrongPrefix {
                    prefix: self.prefix,
                });
            }
        };
        if body.len() != self.body_len() {
            return Err(FormatError::WrongLength {
                prefix: self.prefix,
                expected: self.body_len(),
                found: body.len(),
            });
        }
        // Branch-free over the whole body (it vectorizes); the position only on failure.
        if !body
            .iter()
            .fold(true, |ok, b| ok & b.is_ascii_alphanumeric())
        {
            let i = body
                .iter()
                .position(|b| !b.is_ascii_alphanumeric())
                .unwrap_or_default();
            return Err(FormatError::InvalidCharacter {
                prefix: self.prefix,
                position: prefix.len() + 2 + i,
            });
        }
        // The length was checked: the last 6 bytes are the checksum.
        let (random, found) = body
            .split_last_chunk::<CHECKSUM_LEN>()
            .ok_or(FormatError::ChecksumMismatch)?;
        let checksum =
            Checksum::verify(random, *found, self.alphabet).ok_or(FormatError::ChecksumMismatch)?;
        Ok(ParsedToken {
            token: s,
            prefix_len: prefix.len() as u8,
            checksum,
        })
    }

    /// Finds the format a token was made in, for tokens read without context (such as a
    /// `rawToken` in JSON): the prefix is what stands before the first `_`, the random
    /// length is what lies between it and the checksum, and the digit order is the one
    /// whose checksum matches (Dynamic's first).
    pub fn infer(s: &str) -> Result<TokenFormat, FormatError> {
        let unrecognized = FormatError::Unrecognized;
        let (prefix, body) = s.split_once('_').ok_or(unrecognized)?;
        let prefix = Prefix::new(prefix).map_err(|_| unrecognized)?;
        let random_len = body.len().checked_sub(CHECKSUM_LEN).ok_or(unrecognized)?;
        let format = TokenFormat::dynamic()
            .with_random_len(random_len)
            .map_err(|_| unrecognized)?;
        let format = TokenFormat { prefix, ..format };
        let mut last = unrecognized;
        for alphabet in Alphabet::ALL {
            let candidate = format.with_alphabet(alphabet);
            match candidate.parse(s) {
                Ok(_) => return Ok(candidate),
                Err(e) => last = e,
            }
        }
        // A Dynamic token shorter than Dynamic's length was most likely cut short: say so,
        // rather than blame the checksum of a guessed shorter format.
        match TokenFormat::dynamic().parse(s) {
            Err(
                e @ FormatError::WrongLength {
                    expected, found, ..
                },
            ) if found < expected => Err(e),
            _ => Err(last),
        }
    }
}

/// A presented token that passed [`TokenFormat::parse`]; it borrows the input.
///
/// It is as secret as the token: `Debug` shows only prefix and checksum.
#[derive(Clone, Copy)]
pub struct ParsedToken<'a> {
    token: &'a str,
    prefix_len: u8,
    checksum: Checksum,
}

impl<'a> ParsedToken<'a> {
    /// The prefix, without the underscore.
    pub fn prefix(&self) -> &'a str {
        self.token
            .get(..usize::from(self.prefix_len))
            .unwrap_or_default()
    }

    /// The last 6 characters.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// The whole token, secret included. Hash it; do not log, store or display it.
    pub fn expose_secret(&self) -> &'a str {
        self.token
    }

    /// An owned copy that is wiped from memory when dropped.
    pub fn to_raw_token(&self) -> RawToken {
        let mut buf = [0u8; MAX_TOKEN_LEN];
        let len = self.token.len();
        buf[..len].copy_from_slice(self.token.as_bytes());
        RawToken::from_parts(buf, len, usize::from(self.prefix_len), self.checksum)
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedToken({}_…{})", self.prefix(), self.checksum())
    }
}

impl RawToken {
    /// Reads a token of any format (see [`TokenFormat::infer`]).
    pub fn parse_any(s: &str) -> Result<RawToken, FormatError> {
        let format = TokenFormat::infer(s)?;
        Ok(format.parse(s)?.to_raw_token())
    }
}

/// Why a presented string is not a token of the expected format.
///
/// Messages never repeat the presented text, which may be a real token with a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Nothing was presented.
    #[error("no token given: expected `{prefix}_` followed by {expected} letters and digits")]
    Empty {
        /// The expected prefix.
        prefix: Prefix,
        /// The expected number of characters after `{prefix}_`.
        expected: usize,
    },
    /// The token does not start with `{prefix}_`.
    #[error("wrong prefix: expected a token starting with `{prefix}_`")]
    WrongPrefix {
        /// The expected prefix.
        prefix: Prefix,
    },
    /// The part after the prefix has the wrong length (counted in bytes).
    #[error("expected {expected} characters after `{prefix}_`, got {found}")]
    WrongLength {
        /// The expected prefix.
        prefix: Prefix,
        /// The expected number of characters after `{prefix}_`.
        expected: usize,
        /// The number found.
        found: usize,
    },
    /// A character after the prefix is not an ASCII letter or digit.
    #[error(
        "character {position} is not allowed: after `{prefix}_` a token has only the characters 0-9, a-z and A-Z"
    )]
    InvalidCharacter {
        /// The expected prefix.
        prefix: Prefix,
        /// Position of the offending byte in the token, counting from 1.
        position: usize,
    },
    /// The last 6 characters are not the checksum of the random part.
    #[error(
        "checksum mismatch: the last 6 characters do not match the rest of the token; it was mistyped, truncated or altered"
    )]
    ChecksumMismatch,
    /// Not shaped like a token of any format (only from [`TokenFormat::infer`]).
    #[error(
        "not a token: expected a prefix of 1 to 16 letters and digits, `_`, then 28 to 70 letters and digits ending in a valid checksum"
    )]
    Unrecognized,
}

/// A format's configuration is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatConfigError {
    /// The prefix is empty or longer than 16 bytes.
    #[error("a prefix has 1 to 16 characters, got {found}")]
    PrefixLength {
        /// Its length in bytes.
        found: usize,
    },
    /// The prefix starts with a digit.
    #[error("a prefix must start with a letter (a-z or A-Z)")]
    PrefixStart,
    /// The prefix holds something other than ASCII letters and digits.
    #[error("prefix character {position} is not allowed: a prefix has only letters and digits")]
    PrefixCharacter {
        /// Position of the offending byte, counting from 1.
        position: usize,
    },
    /// The random length is outside 22 to 64.
    #[error("a token has 22 to 64 random characters (at least 128 bits), got {found}")]
    RandomLength {
        /// The length asked for.
        found: usize,
    },
}
