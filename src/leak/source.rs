//! Where the keys come from: [`KeySource`] and [`StaticKeys`].

use super::key::{KeyId, KeyList, KeyListError, ReportKey};
use crate::store::BoxError;
use async_trait::async_trait;
use std::sync::Arc;

/// Where [`verify_with`](super::verify_with) finds a partner's public key by its
/// identifier: a fixed [`KeyList`] ([`StaticKeys`]), or one fetched from the partner.
///
/// Implement it with `#[apitoken::async_trait]`; it is object safe
/// (`Arc<dyn KeySource>`), and `Arc`, `Box` and references forward to it.
///
/// # Contract
///
/// - [`key`](Self::key) answers the key the partner lists under `id`, whose
///   [`ReportKey::id`] is `id`, or `Ok(None)` when the partner lists none.
/// - A known identifier is answered from memory, without I/O: partners expect an answer
///   within seconds, and may send many reports at once.
/// - An unknown identifier is where a source that fetches fetches the partner's list again,
///   since the partner may have added a key (with no list yet, say before the first fetch
///   at start-up succeeded, every identifier is unknown). It fetches **at most once a
///   minute**, whatever the identifiers asked for: anyone can send a request naming a
///   made-up key, and partners rate-limit their key endpoints. Concurrent callers share
///   one fetch, and a fetch is conditional (`If-None-Match` with the last answer's `ETag`;
///   304 keeps the list).
/// - A fetched list replaces the last good one whole, once [`KeyList::from_json`] has
///   read it, so a key the partner withdrew stops verifying. A failed fetch, or a list
///   that cannot be read, leaves the last good list in place and is the
///   [`KeySourceError`] answered for the identifiers that needed it: the caller answers
///   503 and the partner sends the report again.
/// - Until the next fetch may be tried, an identifier unknown to the last good list is
///   answered without I/O from the last fetch: `Ok(None)` after one that succeeded, a
///   [`KeySourceError`] again after one that failed.
/// - It never logs report bodies or signatures: it is given neither.
#[async_trait]
pub trait KeySource: Send + Sync + core::fmt::Debug {
    /// The key listed under `id`, if any (see the contract).
    async fn key(&self, id: &KeyId) -> Result<Option<ReportKey>, KeySourceError>;
}

macro_rules! forward_key_source {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<T: KeySource + ?Sized> KeySource for $ty {
            async fn key(&self, id: &KeyId) -> Result<Option<ReportKey>, KeySourceError> {
                (**self).key(id).await
            }
        }
    )*};
}

forward_key_source!(Arc<T>, Box<T>, &T);

/// Why a [`KeySource`] could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// The key list could not be fetched (network, timeout, an error status).
    #[error(
        "the partner's key list could not be fetched ({source}): answer 503 so that the partner sends the report again, and check the key list URL and the network"
    )]
    Unavailable {
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The partner answered with a key list that cannot be used.
    #[error("the partner's key list cannot be used: {0}")]
    InvalidKeyList(#[from] KeyListError),
}

/// A [`KeySource`] that knows a fixed [`KeyList`] and never fetches: for tests, for
/// air-gapped deployments, and for keys pinned in configuration.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use apitoken::leak::{KeyId, KeyList, KeySource, ReportKey, StaticKeys, verify_with};
/// use std::sync::Arc;
///
/// let pem = "-----BEGIN PUBLIC KEY-----
/// MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq
/// kCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==
/// -----END PUBLIC KEY-----";
/// let key = ReportKey::from_pem(KeyId::new("pinned")?, pem)?;
/// let source: Arc<dyn KeySource> = Arc::new(StaticKeys::new(KeyList::new([key])?));
///
/// let signature = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";
/// let body = br#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;
/// verify_with(&source, "pinned", signature, body).await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct StaticKeys {
    keys: KeyList,
}

impl StaticKeys {
    /// A source of these keys.
    pub fn new(keys: KeyList) -> StaticKeys {
        StaticKeys { keys }
    }

    /// The keys.
    pub fn keys(&self) -> &KeyList {
        &self.keys
    }
}

impl From<KeyList> for StaticKeys {
    fn from(keys: KeyList) -> StaticKeys {
        StaticKeys::new(keys)
    }
}

#[async_trait]
impl KeySource for StaticKeys {
    async fn key(&self, id: &KeyId) -> Result<Option<ReportKey>, KeySourceError> {
        Ok(self.keys.get(id.as_str()).cloned())
    }
}
