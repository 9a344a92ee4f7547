//! Checking a report's signature: [`Signature`], [`verify`], [`verify_with`].

use super::key::{InvalidKeyId, KeyId, KeyList};
use super::source::{KeySource, KeySourceError};
use base64ct::{Base64, Encoding};
use core::str::FromStr;

/// The longest DER encoding of a P-256 signature: a SEQUENCE of two INTEGERs of at most
/// 33 bytes each (a sign byte before a high bit), with 2 bytes of header apiece.
const MAX_DER_LEN: usize = 72;

/// A partner's signature of a report, as its `…-Public-Key-Signature` header carries it:
/// standard base64 (with padding) of an ASN.1 DER ECDSA P-256 signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature(p256::ecdsa::Signature);

impl Signature {
    /// Parses the header's value.
    ///
    /// # Errors
    ///
    /// [`MalformedSignature`] when `header` is not such a signature.
    pub fn from_base64(header: &str) -> Result<Signature, MalformedSignature> {
        // A value longer than any signature fails to decode into the buffer: no allocation
        // however long the header.
        let mut buf = [0u8; MAX_DER_LEN];
        let der = Base64::decode(header, &mut buf).map_err(|_| MalformedSignature)?;
        p256::ecdsa::Signature::from_der(der)
            .map(Signature)
            .map_err(|_| MalformedSignature)
    }

    pub(super) fn as_p256(&self) -> &p256::ecdsa::Signature {
        &self.0
    }
}

impl FromStr for Signature {
    type Err = MalformedSignature;

    fn from_str(s: &str) -> Result<Signature, MalformedSignature> {
        Signature::from_base64(s)
    }
}

/// Text that is not a [`Signature`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a signature: expected standard base64 of an ASN.1 DER ECDSA P-256 signature")]
pub struct MalformedSignature;

/// Why a report is not accepted as the partner's.
///
/// Whatever the variant, do not act on the report. The messages never contain the body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The key identifier header is not a key identifier.
    #[error("the public key identifier header is unusable ({0}): reject the request")]
    MalformedKeyId(#[from] InvalidKeyId),
    /// The signature header is not a signature.
    #[error("the public key signature header is unusable ({0}): reject the request")]
    MalformedSignature(#[from] MalformedSignature),
    /// The partner lists no key under this identifier.
    #[error(
        "the partner lists no key {id}: reject the request, and if the partner may have added a key since the key list was read, read it again (a fetching key source does so by itself)"
    )]
    UnknownKey {
        /// The identifier the request named.
        id: KeyId,
    },
    /// The signature does not sign this body under this key.
    #[error(
        "the signature does not match the body under key {id}: reject the request (check that the raw body bytes as received were verified, not re-serialized JSON)"
    )]
    BadSignature {
        /// The key tried.
        id: KeyId,
    },
    /// The key source could not answer.
    #[error("the partner's keys could not be read: {0}")]
    KeySource(#[from] KeySourceError),
}

/// Checks that a report was signed by the partner whose keys are `keys`.
///
/// `key_id` and `signature_b64` are the values of the partner's
/// `…-Public-Key-Identifier` and `…-Public-Key-Signature` headers; `body` is the request
/// body exactly as received. The headers are parsed before any key is looked up.
///
/// # Errors
///
/// See [`VerifyError`]: a malformed header, an unknown key, or a signature that does not
/// match.
pub fn verify(
    keys: &KeyList,
    key_id: &str,
    signature_b64: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let id = KeyId::new(key_id)?;
    let signature = Signature::from_base64(signature_b64)?;
    match keys.get(id.as_str()) {
        Some(key) => key.verify(&signature, body),
        None => Err(VerifyError::UnknownKey { id }),
    }
}

/// [`verify`] with the key from a [`KeySource`].
///
/// Malformed headers are refused before the source is asked, so garbage never makes a
/// fetching source fetch.
///
/// # Errors
///
/// See [`VerifyError`]; [`VerifyError::KeySource`] when the source fails.
pub async fn verify_with<S: KeySource + ?Sized>(
    source: &S,
    key_id: &str,
    signature_b64: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    let id = KeyId::new(key_id)?;
    let signature = Signature::from_base64(signature_b64)?;
    match source.key(&id).await? {
        Some(key) => key.verify(&signature, body),
        None => Err(VerifyError::UnknownKey { id }),
    }
}
