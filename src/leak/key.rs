//! A partner's public keys: [`KeyId`], [`ReportKey`] and [`KeyList`].

use super::verify::{Signature, VerifyError};
use crate::store::BoxError;
use core::fmt;
use core::str::FromStr;
use p256::ecdsa::VerifyingKey;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;

/// The longest key identifier accepted, in bytes (GitHub's are 64 hexadecimal digits).
pub const MAX_KEY_ID_LEN: usize = 256;

/// The identifier of a partner's public key, as its key list and its
/// `…-Public-Key-Identifier` header name it: 1 to [`MAX_KEY_ID_LEN`] visible ASCII
/// characters, without spaces.
///
/// The header is untrusted input; once parsed, an identifier is safe to write to logs and
/// error messages (bounded, one line).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(Box<str>);

impl KeyId {
    /// Parses a key identifier.
    ///
    /// # Errors
    ///
    /// [`InvalidKeyId`] when `id` is empty, longer than [`MAX_KEY_ID_LEN`] bytes, or holds
    /// anything but visible ASCII.
    pub fn new(id: &str) -> Result<KeyId, InvalidKeyId> {
        if (1..=MAX_KEY_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(KeyId(id.into()))
        } else {
            Err(InvalidKeyId)
        }
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = InvalidKeyId;

    fn from_str(s: &str) -> Result<KeyId, InvalidKeyId> {
        KeyId::new(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", &*self.0)
    }
}

/// Text that is not a [`KeyId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a key identifier: expected 1 to {MAX_KEY_ID_LEN} visible ASCII characters, without spaces"
)]
pub struct InvalidKeyId;

/// One public key of a partner: an ECDSA P-256 key and the identifier it is listed under.
#[derive(Clone, Debug)]
pub struct ReportKey {
    id: KeyId,
    key: VerifyingKey,
}

impl ReportKey {
    /// Reads a P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`, a
    /// SubjectPublicKeyInfo), as partners' key lists hold them.
    ///
    /// # Errors
    ///
    /// [`KeyListError::MalformedKey`] when `pem` is not such a key (another curve or
    /// algorithm included).
    pub fn from_pem(id: KeyId, pem: &str) -> Result<ReportKey, KeyListError> {
        // Whitespace around the armour means nothing, and key lists end keys with `\n`.
        match VerifyingKey::from_public_key_pem(pem.trim()) {
            Ok(key) => Ok(ReportKey { id, key }),
            Err(err) => Err(KeyListError::MalformedKey {
                id,
                source: Box::new(err),
            }),
        }
    }

    /// The identifier the key is listed under.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Checks that `signature` signs `body`, the request body exactly as received.
    ///
    /// # Errors
    ///
    /// [`VerifyError::BadSignature`] when it does not.
    pub fn verify(&self, signature: &Signature, body: &[u8]) -> Result<(), VerifyError> {
        self.key
            .verify(body, signature.as_p256())
            .map_err(|_| VerifyError::BadSignature {
                id: self.id.clone(),
            })
    }
}

/// A partner's public keys: at least one, each under an identifier of its own.
///
/// Read a partner's key list with [`KeyList::from_json`]; it has this shape (GitHub's
/// `https://api.github.com/meta/public_keys/secret_scanning`, and GitLab's at the URL it
/// gives each partner):
///
/// ```json
/// {"public_keys": [{"key_identifier": "…", "key": "-----BEGIN PUBLIC KEY-----\n…", "is_current": true}]}
/// ```
///
/// Every listed key verifies, current or not: a partner lists a key it is rotating away
/// from for as long as reports signed with it may still arrive.
#[derive(Clone, Debug)]
pub struct KeyList {
    // A handful of keys: a scan is faster than any map.
    keys: Vec<ReportKey>,
}

impl KeyList {
    /// A key list of these keys.
    ///
    /// # Errors
    ///
    /// [`KeyListError::Empty`] for no key, [`KeyListError::DuplicateKey`] when two keys
    /// share an identifier.
    pub fn new(keys: impl IntoIterator<Item = ReportKey>) -> Result<KeyList, KeyListError> {
        let mut list: Vec<ReportKey> = Vec::new();
        for key in keys {
            if list.iter().any(|known| known.id == key.id) {
                return Err(KeyListError::DuplicateKey { id: key.id });
            }
            list.push(key);
        }
        if list.is_empty() {
            return Err(KeyListError::Empty);
        }
        Ok(KeyList { keys: list })
    }

    /// Reads a partner's key list (the JSON shape in the [type documentation](KeyList)).
    /// Other fields, such as `is_current`, are ignored.
    ///
    /// # Errors
    ///
    /// [`KeyListError::Malformed`] when `json` does not have that shape,
    /// [`KeyListError::InvalidKeyId`] or [`KeyListError::MalformedKey`] for an entry that
    /// is not a key, and the errors of [`KeyList::new`].
    pub fn from_json(json: &[u8]) -> Result<KeyList, KeyListError> {
        #[derive(serde::Deserialize)]
        struct Wire {
            public_keys: Vec<WireKey>,
        }
        #[derive(serde::Deserialize)]
        struct WireKey {
            key_identifier: String,
            key: String,
        }

        // serde_json's message would quote the input; its position is enough to find it.
        let wire: Wire = serde_json::from_slice(json).map_err(|err| KeyListError::Malformed {
            line: err.line(),
            column: err.column(),
        })?;
        let mut keys = Vec::with_capacity(wire.public_keys.len());
        for (index, entry) in wire.public_keys.into_iter().enumerate() {
            let id = KeyId::new(&entry.key_identifier)
                .map_err(|source| KeyListError::InvalidKeyId { index, source })?;
            keys.push(ReportKey::from_pem(id, &entry.key)?);
        }
        KeyList::new(keys)
    }

    /// The key listed under `id`.
    pub fn get(&self, id: &str) -> Option<&ReportKey> {
        self.keys.iter().find(|key| key.id.as_str() == id)
    }

    /// The keys, in the list's order.
    pub fn iter(&self) -> core::slice::Iter<'_, ReportKey> {
        self.keys.iter()
    }
}

impl<'a> IntoIterator for &'a KeyList {
    type Item = &'a ReportKey;
    type IntoIter = core::slice::Iter<'a, ReportKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Why a key list, or a key in it, cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyListError {
    /// Not JSON of the documented shape.
    #[error(
        "the key list is not JSON of the shape {{\"public_keys\": [{{\"key_identifier\": …, \"key\": …}}]}} (at line {line}, column {column}): check that its URL is the partner's secret-scanning key list"
    )]
    Malformed {
        /// Where reading stopped, counted from 1.
        line: usize,
        /// Where reading stopped in that line, counted from 1.
        column: usize,
    },
    /// An entry's `key_identifier` is not a [`KeyId`].
    #[error(
        "entry {index} of the key list (counted from 0) has an unusable identifier ({source}): check that its URL is the partner's secret-scanning key list"
    )]
    InvalidKeyId {
        /// The entry, counted from 0.
        index: usize,
        /// What is wrong with it.
        source: InvalidKeyId,
    },
    /// A key is not an ECDSA P-256 public key in PEM.
    #[error(
        "key {id} is not an ECDSA P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`) ({source}): check that the key list is the partner's secret-scanning key list; only P-256 signatures are verified"
    )]
    MalformedKey {
        /// The key's identifier.
        id: KeyId,
        /// Why it could not be read.
        #[source]
        source: BoxError,
    },
    /// Two keys share an identifier, so which one signs under it is ambiguous.
    #[error(
        "the key list holds two keys under the identifier {id}, so which one signs under it is ambiguous: fix the key list"
    )]
    DuplicateKey {
        /// The identifier.
        id: KeyId,
    },
    /// The list holds no key, so nothing would verify.
    #[error(
        "the key list holds no key, so no report would verify: check that its URL is the partner's secret-scanning key list"
    )]
    Empty,
}
