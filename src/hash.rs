//! [`TokenHasher`] and [`TokenHash`]: what is stored instead of the token.
//!
//! A token is 178 random bits (30 base-62 characters), so a fast hash is right: there is
//! nothing to brute-force, and a slow password hasher would only make every request slower
//! (NIST SP 800-63B §5.1.1.2 asks for salted slow hashes for memorized secrets, not for
//! high-entropy generated ones). BLAKE3 is keyed with the server's secret when one is
//! configured, so a stolen database alone cannot even confirm a guess; otherwise it runs
//! in key-derivation mode with a fixed context string, so its hashes never collide with
//! any other use of BLAKE3.

use blake3::hazmat::HasherExt;
use core::fmt;
use std::sync::LazyLock;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The derive-key context when no server secret is configured. Changing it changes every
/// stored hash: the pinned vectors in the tests guard it.
pub const HASH_CONTEXT: &str = "apitoken 2026-11-28 API token hash at rest v1";

const FINGERPRINT_CONTEXT: &str = "apitoken 2026-11-28 hash key fingerprint v1";

static CONTEXT_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::hazmat::hash_derive_key_context(HASH_CONTEXT));

/// A 32-byte server secret that keys the hash. Wiped from memory when dropped; `Debug`
/// shows only its fingerprint.
#[derive(Clone)]
pub struct HashKey([u8; 32]);

impl Drop for HashKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl HashKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> HashKey {
        HashKey(bytes)
    }

    /// Reads 64 hexadecimal characters (surrounding whitespace ignored).
    pub fn from_hex(hex: &str) -> Result<HashKey, HashKeyError> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(HashKeyError::Length {
                found: hex.chars().count(),
            });
        }
        let mut bytes = [0u8; 32];
        if !decode_hex(hex.as_bytes(), &mut bytes) {
            bytes.zeroize();
            return Err(HashKeyError::NotHex);
        }
        Ok(HashKey(bytes))
    }

    /// A fresh random key from the operating system.
    pub fn generate() -> Result<HashKey, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(HashKey(bytes))
    }

    /// The secret bytes. Keep them out of logs and databases.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public identifier of the key (a one-way derivation), for checking that a
    /// database is opened with the key it was written with.
    pub fn fingerprint(&self) -> KeyFingerprint {
        let derived = blake3::derive_key(FINGERPRINT_CONTEXT, &self.0);
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&derived[..8]);
        KeyFingerprint::Keyed(bytes)
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashKey({})", self.fingerprint())
    }
}

/// Writes the bytes `hex` spells (two digits each, either case) into `out`; false, with
/// `out` partly written, when a digit is not hexadecimal or the lengths do not match.
/// RustCrypto's `base16ct`, whose decoding takes the same time whatever the digits: a
/// hash key is a secret, and a table or a `match` per digit branches on it.
fn decode_hex(hex: &[u8], out: &mut [u8]) -> bool {
    let len = out.len();
    base16ct::mixed::decode(hex, out).is_ok_and(|written| written.len() == len)
}

/// A hash key that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashKeyError {
    /// Not 64 characters.
    #[error("a hash key is 64 hexadecimal characters (32 bytes), got {found} characters")]
    Length {
        /// Characters found.
        found: usize,
    },
    /// A character is not hexadecimal.
    #[error("a hash key is 64 hexadecimal characters (0-9, a-f); found another character")]
    NotHex,
}

/// The public name of a hashing configuration: no key, or a key's fingerprint (8 bytes of a
/// one-way derivation). A SQL store records it when first prepared
/// ([`TokenIssuerBuilder::prepare`](crate::TokenIssuerBuilder::prepare)) and refuses any
/// other afterwards ([`StoreError::HashKeyMismatch`](crate::StoreError::HashKeyMismatch)),
/// since opening a database with another key would make every token unknown.
///
/// It is written `unkeyed` or `key:` and 16 hexadecimal digits, and parses back:
///
/// ```
/// use apitoken::{HashKey, KeyFingerprint};
///
/// let key = HashKey::from_hex(&"ab".repeat(32))?;
/// let fingerprint = key.fingerprint();
/// assert!(fingerprint.is_keyed());
/// assert_eq!(fingerprint.to_string().parse::<KeyFingerprint>()?, fingerprint);
/// assert_eq!("unkeyed".parse::<KeyFingerprint>()?, KeyFingerprint::Unkeyed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyFingerprint {
    /// Tokens are hashed without a key (with [`HASH_CONTEXT`]).
    Unkeyed,
    /// Tokens are hashed with the key of this fingerprint.
    Keyed([u8; 8]),
}

impl KeyFingerprint {
    /// The fingerprint of hashing with `key`, or without a key.
    pub fn of(key: Option<&HashKey>) -> KeyFingerprint {
        key.map_or(KeyFingerprint::Unkeyed, HashKey::fingerprint)
    }

    /// True when tokens are hashed with a key.
    pub fn is_keyed(&self) -> bool {
        matches!(self, KeyFingerprint::Keyed(_))
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFingerprint::Unkeyed => f.write_str("unkeyed"),
            KeyFingerprint::Keyed(bytes) => {
                f.write_str("key:")?;
                f.write_str(&base16ct::lower::encode_string(bytes))
            }
        }
    }
}

/// Text that is not a [`KeyFingerprint`] (`unkeyed`, or `key:` and 16 hexadecimal digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a hash key fingerprint: expected `unkeyed` or `key:` and 16 hexadecimal digits"
)]
pub struct InvalidFingerprint(String);

impl core::str::FromStr for KeyFingerprint {
    type Err = InvalidFingerprint;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "unkeyed" {
            return Ok(KeyFingerprint::Unkeyed);
        }
        let invalid = || InvalidFingerprint(text.chars().take(40).collect());
        let hex = text.strip_prefix("key:").ok_or_else(invalid)?.as_bytes();
        let mut bytes = [0u8; 8];
        if hex.len() != 16 || !decode_hex(hex, &mut bytes) {
            return Err(invalid());
        }
        Ok(KeyFingerprint::Keyed(bytes))
    }
}

/// Hashes tokens for storage and look-up.
#[derive(Clone, Debug)]
pub struct TokenHasher {
    key: Option<HashKey>,
    /// The key's fingerprint, derived once: the issuer records it with every token.
    fingerprint: KeyFingerprint,
}

impl Default for TokenHasher {
    fn default() -> Self {
        TokenHasher::unkeyed()
    }
}

impl TokenHasher {
    /// BLAKE3 in key-derivation mode with [`HASH_CONTEXT`].
    pub fn unkeyed() -> TokenHasher {
        TokenHasher {
            key: None,
            fingerprint: KeyFingerprint::Unkeyed,
        }
    }

    /// BLAKE3 keyed with the server's secret.
    pub fn keyed(key: HashKey) -> TokenHasher {
        TokenHasher {
            fingerprint: key.fingerprint(),
            key: Some(key),
        }
    }

    /// The public name of the hashing configuration, which a database records so that it
    /// is never read with another key.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// The hash of a whole token (prefix included).
    pub fn hash(&self, token: &str) -> TokenHash {
        self.hash_bytes(token.as_bytes())
    }

    /// The hash of a generated or parsed token: the same as
    /// `hash(token.expose_secret())`, without checking its text again.
    ///
    /// ```
    /// use apitoken::{TokenFormat, TokenHasher};
    ///
    /// let hasher = TokenHasher::unkeyed();
    /// let token = TokenFormat::dynamic().generate(&mut rand::rng());
    /// assert_eq!(hasher.hash_token(&token), hasher.hash(token.expose_secret()));
    /// ```
    pub fn hash_token(&self, token: &crate::secret::RawToken) -> TokenHash {
        self.hash_bytes(token.bytes())
    }

    fn hash_bytes(&self, bytes: &[u8]) -> TokenHash {
        let hash = match &self.key {
            Some(key) => blake3::keyed_hash(&key.0, bytes),
            None => blake3::Hasher::new_from_context_key(&CONTEXT_KEY)
                .update(bytes)
                .finalize(),
        };
        TokenHash(*hash.as_bytes())
    }
}

/// The 32-byte hash of a token: the only form in which a token is stored.
///
/// Equality is constant-time. `Debug` shows the first 8 hex characters.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Wraps 32 bytes read from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> TokenHash {
        TokenHash(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads 64 hex characters.
    pub fn from_hex(hex: &str) -> Result<TokenHash, HashKeyError> {
        // Same shape as a key; the key type wipes its copy on drop.
        Ok(TokenHash(*HashKey::from_hex(hex)?.expose_secret()))
    }

    /// 64 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        base16ct::lower::encode_string(&self.0)
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        // Constant-time: every word is compared, the differences ORed together, and only
        // the result is tested (through `subtle`, so that the compiler cannot turn it
        // into an early exit). A byte-wise `ct_eq` costs ten times as many instructions,
        // on every authentication.
        let (ours, _) = self.0.as_chunks::<8>();
        let (theirs, _) = other.0.as_chunks::<8>();
        let diff = ours.iter().zip(theirs).fold(0u64, |diff, (a, b)| {
            diff | (u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b))
        });
        diff.ct_eq(&0).into()
    }
}

impl core::hash::Hash for TokenHash {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "TokenHash({}…)", hex.get(..8).unwrap_or_default())
    }
}

/// The most retired keys a [`HashKeyring`] holds besides its current key: each one is one
/// more BLAKE3 per authentication, and one more candidate in the store's look-up.
pub const MAX_RETIRED_KEYS: usize = 3;

/// The hash keys an issuer knows: one current key, which hashes every new token, and up to
/// [`MAX_RETIRED_KEYS`] retired ones, which still find the tokens they hashed until those
/// are rehashed to the current key (on use), expire, or are revoked. So a key can be
/// replaced without revoking every token: add a new current key, keep the old one
/// retired, and retire it for good once no live token needs it (`apitoken keys status`).
///
/// The unkeyed hash may be a retired entry, so that a deployment that started without a
/// key can start keying. A ring of one key is exactly a [`TokenHasher`].
///
/// ```
/// use apitoken::{HashKey, HashKeyring, TokenHasher};
///
/// let new = HashKey::from_hex(&"cd".repeat(32))?;
/// let ring = HashKeyring::new(TokenHasher::keyed(new))
///     .with_retired(TokenHasher::unkeyed(), None)?;
/// assert_eq!(ring.len(), 2);
/// let candidates = ring.candidates(b"dyn_example", None);
/// assert_eq!(candidates.len(), 2);
/// assert_eq!(candidates[0], ring.current().hash("dyn_example"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct HashKeyring {
    current: TokenHasher,
    retired: Vec<RetiredKey>,
}

/// A retired entry of a [`HashKeyring`]: a hasher, and the last day (UTC) it is tried.
#[derive(Clone, Debug)]
pub struct RetiredKey {
    hasher: TokenHasher,
    until: Option<chrono::NaiveDate>,
    /// The first instant it is no longer tried: midnight after `until`.
    ends_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RetiredKey {
    /// Its hasher.
    pub fn hasher(&self) -> &TokenHasher {
        &self.hasher
    }

    /// The last day (UTC) it is tried, if it has one.
    pub fn until(&self) -> Option<chrono::NaiveDate> {
        self.until
    }

    /// Whether it is still tried at `now` (always, without an end date; `now` `None`
    /// means "do not look at end dates").
    fn tried_at(&self, now: Option<chrono::DateTime<chrono::Utc>>) -> bool {
        match (self.ends_at, now) {
            (Some(ends_at), Some(now)) => now < ends_at,
            _ => true,
        }
    }
}

/// A keyring that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// More than [`MAX_RETIRED_KEYS`] retired keys.
    #[error(
        "a hash keyring holds at most {MAX_RETIRED_KEYS} retired keys besides the current one: retire one for good (`apitoken keys retire FINGERPRINT`) and drop it from the keyring first"
    )]
    TooManyRetired,
    /// The same key twice (by fingerprint).
    #[error("the hash key {0} is in the keyring twice: keep one line for it")]
    Duplicate(KeyFingerprint),
}

impl HashKeyring {
    /// A ring of one key: exactly `current`.
    pub fn new(current: TokenHasher) -> HashKeyring {
        HashKeyring {
            current,
            retired: Vec::new(),
        }
    }

    /// The same ring with `hasher` retired: still tried on authentication, after the
    /// current key and the keys retired before it, through the day `until` (UTC) when
    /// given. Fails past [`MAX_RETIRED_KEYS`], or when the ring has the key already.
    pub fn with_retired(
        mut self,
        hasher: TokenHasher,
        until: Option<chrono::NaiveDate>,
    ) -> Result<HashKeyring, KeyringError> {
        let fingerprint = hasher.fingerprint();
        if self.fingerprints().contains(fingerprint) {
            return Err(KeyringError::Duplicate(fingerprint));
        }
        if self.retired.len() >= MAX_RETIRED_KEYS {
            return Err(KeyringError::TooManyRetired);
        }
        let ends_at = until
            .and_then(|day| day.succ_opt())
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|midnight| midnight.and_utc());
        self.retired.push(RetiredKey {
            hasher,
            until,
            ends_at,
        });
        Ok(self)
    }

    /// The key every new token is hashed with.
    pub fn current(&self) -> &TokenHasher {
        &self.current
    }

    /// The retired keys, in the order they are tried.
    pub fn retired(&self) -> &[RetiredKey] {
        &self.retired
    }

    /// How many keys: 1 and the retired ones.
    pub fn len(&self) -> usize {
        1 + self.retired.len()
    }

    /// Never: a ring has its current key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether a retired key has an end date (authentication then reads the clock).
    pub fn has_end_dates(&self) -> bool {
        self.retired.iter().any(|key| key.until.is_some())
    }

    /// The fingerprints, current first: what a store is prepared with.
    pub fn fingerprints(&self) -> KeyringFingerprints {
        KeyringFingerprints {
            current: self.current.fingerprint(),
            retired: self
                .retired
                .iter()
                .map(|k| k.hasher.fingerprint())
                .collect(),
        }
    }

    /// The hasher of the key with this fingerprint, if the ring has it.
    pub fn hasher_of(&self, fingerprint: KeyFingerprint) -> Option<&TokenHasher> {
        core::iter::once(&self.current)
            .chain(self.retired.iter().map(|k| &k.hasher))
            .find(|h| h.fingerprint() == fingerprint)
    }

    /// The hash of `token` under each key tried at `now` (every key when `now` is
    /// `None`), current first: one BLAKE3 each. Entry `i` of the answer is the hash under
    /// the key [`Candidates::key`]`(i)` names.
    pub fn candidates(
        &self,
        token: &[u8],
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Candidates {
        let mut candidates = Candidates {
            hashes: [TokenHash([0; 32]); 1 + MAX_RETIRED_KEYS],
            keys: [KeyFingerprint::Unkeyed; 1 + MAX_RETIRED_KEYS],
            len: 0,
        };
        let tried = core::iter::once(&self.current).chain(
            self.retired
                .iter()
                .filter(|k| k.tried_at(now))
                .map(|k| &k.hasher),
        );
        for (i, hasher) in tried.enumerate().take(1 + MAX_RETIRED_KEYS) {
            if let (Some(hash), Some(key)) =
                (candidates.hashes.get_mut(i), candidates.keys.get_mut(i))
            {
                *hash = hasher.hash_bytes(token);
                *key = hasher.fingerprint();
                candidates.len = i + 1;
            }
        }
        candidates
    }
}

impl From<TokenHasher> for HashKeyring {
    fn from(current: TokenHasher) -> Self {
        HashKeyring::new(current)
    }
}

/// The hashes of one token under each key of a [`HashKeyring`], current first, without
/// allocating: what authentication looks up in one store call. Derefs to the hashes.
#[derive(Clone, Copy, Debug)]
pub struct Candidates {
    hashes: [TokenHash; 1 + MAX_RETIRED_KEYS],
    keys: [KeyFingerprint; 1 + MAX_RETIRED_KEYS],
    len: usize,
}

impl Candidates {
    /// The hashes, current key first.
    pub fn hashes(&self) -> &[TokenHash] {
        self.hashes.get(..self.len).unwrap_or_default()
    }

    /// The fingerprint of the key that made hash `i`.
    pub fn key(&self, i: usize) -> Option<KeyFingerprint> {
        self.keys.get(..self.len)?.get(i).copied()
    }
}

impl core::ops::Deref for Candidates {
    type Target = [TokenHash];

    fn deref(&self) -> &[TokenHash] {
        self.hashes()
    }
}

/// The public side of a [`HashKeyring`]: its keys' fingerprints, current first. What a
/// store is [prepared](crate::TokenStore::prepare_keyring) with: it records the current
/// key as one it holds rows for, and refuses a ring that lacks a key its rows need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringFingerprints {
    current: KeyFingerprint,
    retired: Vec<KeyFingerprint>,
}

impl KeyringFingerprints {
    /// A ring of one key.
    pub fn single(current: KeyFingerprint) -> KeyringFingerprints {
        KeyringFingerprints {
            current,
            retired: Vec::new(),
        }
    }

    /// The same ring with `fingerprint` retired too (for a store's tests; an issuer's
    /// ring comes from its [`HashKeyring`]).
    pub fn with_retired(mut self, fingerprint: KeyFingerprint) -> KeyringFingerprints {
        if !self.contains(fingerprint) {
            self.retired.push(fingerprint);
        }
        self
    }

    /// The current key's fingerprint.
    pub fn current(&self) -> KeyFingerprint {
        self.current
    }

    /// The retired keys' fingerprints.
    pub fn retired(&self) -> &[KeyFingerprint] {
        &self.retired
    }

    /// Whether the ring has the key of this fingerprint, current or retired.
    pub fn contains(&self, fingerprint: KeyFingerprint) -> bool {
        self.current == fingerprint || self.retired.contains(&fingerprint)
    }

    /// Whether the ring holds only its current key.
    pub fn is_single(&self) -> bool {
        self.retired.is_empty()
    }
}

impl From<KeyFingerprint> for KeyringFingerprints {
    fn from(current: KeyFingerprint) -> Self {
        KeyringFingerprints::single(current)
    }
}
