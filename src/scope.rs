//! [`Scope`], [`Scopes`] and [`ScopeCatalog`]: what a token may do.
//!
//! A [`Scope`] is any well-formed scope string (dot-separated segments of letters, digits,
//! `_` and `-`), so stored tokens stay readable when an application's vocabulary changes.
//! Which scopes an issuer *grants* is decided by its [`ScopeCatalog`]: by default the 14
//! scopes of Dynamic's reference page, extensible without forking:
//!
//! ```
//! use apitoken::{Scope, ScopeCatalog};
//!
//! let catalog = ScopeCatalog::reference()
//!     .with(Scope::from_static("all.read"))
//!     .with(Scope::from_static("gasless.read"))
//!     .with(Scope::from_static("gasless.write"));
//! assert_eq!(catalog.len(), 17);
//! assert!(catalog.parse("gasless.write").is_ok());
//! let err = catalog.parse("gasless.admin").unwrap_err();
//! assert_eq!(err.to_string(), "unknown scope \"gasless.admin\": it is not in this issuer's catalog");
//! ```

use core::{cmp::Ordering, fmt};
use std::sync::Arc;

/// The longest scope string accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 100;

/// One permission, such as `environment.apiTokens.read`.
///
/// Built-in scopes are constants and cost no allocation; comparisons are by string.
#[derive(Clone)]
pub struct Scope(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

macro_rules! reference_scopes {
    ($($(#[$doc:meta])* $name:ident = $value:literal;)*) => {
        impl Scope {
            $($(#[$doc])* pub const $name: Scope = Scope::from_static($value);)*
        }
        /// The 14 scopes of Dynamic's reference page, in its order.
        pub static REFERENCE_SCOPES: [Scope; 14] = [$(Scope::$name),*];
    };
}

reference_scopes! {
    /// `waas.delegatedAccess.signMessage`
    WAAS_DELEGATED_ACCESS_SIGN_MESSAGE = "waas.delegatedAccess.signMessage";
    /// `waas.authenticate`
    WAAS_AUTHENTICATE = "waas.authenticate";
    /// `environment.settings.read`
    ENVIRONMENT_SETTINGS_READ = "environment.settings.read";
    /// `environment.settings.write`
    ENVIRONMENT_SETTINGS_WRITE = "environment.settings.write";
    /// `environment.apiTokens.read`: list an environment's tokens.
    ENVIRONMENT_API_TOKENS_READ = "environment.apiTokens.read";
    /// `environment.apiTokens.write`: create and delete an environment's tokens.
    ENVIRONMENT_API_TOKENS_WRITE = "environment.apiTokens.write";
    /// `environment.users.read`
    ENVIRONMENT_USERS_READ = "environment.users.read";
    /// `environment.users.write`
    ENVIRONMENT_USERS_WRITE = "environment.users.write";
    /// `environment.analytics.read`
    ENVIRONMENT_ANALYTICS_READ = "environment.analytics.read";
    /// `environment.webhooks.read`
    ENVIRONMENT_WEBHOOKS_READ = "environment.webhooks.read";
    /// `environment.webhooks.write`
    ENVIRONMENT_WEBHOOKS_WRITE = "environment.webhooks.write";
    /// `environment.events.read`
    ENVIRONMENT_EVENTS_READ = "environment.events.read";
    /// `environment.events.write`
    ENVIRONMENT_EVENTS_WRITE = "environment.events.write";
    /// `environment.balances.read`
    ENVIRONMENT_BALANCES_READ = "environment.balances.read";
}

impl Scope {
    /// Checks a scope string. Reference scopes come back as their constants.
    pub fn new(s: &str) -> Result<Scope, ScopeError> {
        check_syntax(s.as_bytes())?;
        Ok(REFERENCE_SCOPES
            .iter()
            .find(|known| known.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Scope(Repr::Shared(Arc::from(s)))))
    }

    /// A scope from a string literal, for constants.
    ///
    /// # Panics
    ///
    /// When `s` is not a well-formed scope; in a `const` this fails the build instead.
    #[allow(clippy::panic)] // documented; meant for `const` items, where it fails the build
    pub const fn from_static(s: &'static str) -> Scope {
        match check_syntax(s.as_bytes()) {
            Ok(()) => Scope(Repr::Static(s)),
            Err(_) => panic!("not a well-formed scope"),
        }
    }

    /// The scope string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

/// A broken syntax rule; `Copy`, so the check can run in `const` contexts.
#[derive(Clone, Copy)]
enum Syntax {
    Empty,
    TooLong(usize),
    InvalidCharacter(usize),
    EmptySegment(usize),
}

impl From<Syntax> for ScopeError {
    fn from(e: Syntax) -> Self {
        match e {
            Syntax::Empty => ScopeError::Empty,
            Syntax::TooLong(found) => ScopeError::TooLong { found },
            Syntax::InvalidCharacter(position) => ScopeError::InvalidCharacter { position },
            Syntax::EmptySegment(position) => ScopeError::EmptySegment { position },
        }
    }
}

const fn check_syntax(s: &[u8]) -> Result<(), Syntax> {
    if s.is_empty() {
        return Err(Syntax::Empty);
    }
    let mut i = 0;
    let mut segment_start = true;
    while i < s.len() {
        let c = s[i];
        if c == b'.' {
            if segment_start {
                return Err(Syntax::EmptySegment(i + 1));
            }
            segment_start = true;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
            segment_start = false;
        } else {
            return Err(Syntax::InvalidCharacter(i + 1));
        }
        i += 1;
    }
    if segment_start {
        return Err(Syntax::EmptySegment(s.len()));
    }
    // Checked last, so that a wrong character is reported as such.
    if s.len() > MAX_SCOPE_LEN {
        return Err(Syntax::TooLong(s.len()));
    }
    Ok(())
}

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Scope {}
impl PartialOrd for Scope {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scope {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}
impl core::hash::Hash for Scope {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.as_str())
    }
}
impl core::str::FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::new(s)
    }
}
impl TryFrom<&str> for Scope {
    type Error = ScopeError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Scope::new(s)
    }
}

/// Why a string is not an acceptable scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The empty string.
    #[error("empty scope: expected dot-separated names such as `environment.apiTokens.read`")]
    Empty,
    /// Longer than [`MAX_SCOPE_LEN`].
    #[error("scope too long: at most 100 characters, got {found}")]
    TooLong {
        /// Bytes found.
        found: usize,
    },
    /// A character other than a letter, digit, `_`, `-` or `.`.
    #[error(
        "scope character {position} is not allowed: scopes have letters, digits, `_`, `-` and `.`"
    )]
    InvalidCharacter {
        /// Position counting from 1.
        position: usize,
    },
    /// Leading, trailing or doubled `.`.
    #[error("empty segment at character {position}: a scope is names separated by single dots")]
    EmptySegment {
        /// Position counting from 1.
        position: usize,
    },
    /// Well-formed, but not in the catalog.
    #[error("unknown scope {name:?}: it is not in this issuer's catalog")]
    Unknown {
        /// The scope string as given.
        name: String,
    },
}

/// A set of scopes, kept sorted by string with duplicates removed, so it serializes as a
/// JSON array in one canonical order. Cloning is a reference-count increment; membership
/// and subset checks allocate nothing.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(Option<Arc<[Scope]>>);

impl Scopes {
    /// No scopes.
    pub const fn empty() -> Scopes {
        Scopes(None)
    }

    /// The scopes, in canonical (byte-wise string) order.
    pub fn as_slice(&self) -> &[Scope] {
        self.0.as_deref().unwrap_or_default()
    }

    /// Iterates in canonical order.
    pub fn iter(&self) -> core::slice::Iter<'_, Scope> {
        self.as_slice().iter()
    }

    /// How many distinct scopes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Whether `scope` is in the set (binary search; no allocation).
    pub fn contains(&self, scope: &Scope) -> bool {
        self.contains_str(scope.as_str())
    }

    /// Whether a scope string is in the set.
    pub fn contains_str(&self, scope: &str) -> bool {
        self.as_slice()
            .binary_search_by(|s| s.as_str().cmp(scope))
            .is_ok()
    }

    /// Whether every scope in `required` is in the set.
    pub fn contains_all<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        self.first_missing(required).is_none()
    }

    /// The first scope of `required` not in the set.
    pub fn first_missing<'a>(
        &self,
        required: impl IntoIterator<Item = &'a Scope>,
    ) -> Option<&'a Scope> {
        required.into_iter().find(|s| !self.contains(s))
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(&self, other: &Scopes) -> bool {
        other.contains_all(self.iter())
    }

    /// The same set plus `scope`.
    pub fn with(&self, scope: Scope) -> Scopes {
        self.iter().cloned().chain([scope]).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut v: Vec<Scope> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        if v.is_empty() {
            Scopes(None)
        } else {
            Scopes(Some(v.into()))
        }
    }
}

impl<const N: usize> From<[Scope; N]> for Scopes {
    fn from(scopes: [Scope; N]) -> Self {
        scopes.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = core::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

/// The vocabulary an issuer grants: every requested scope must be in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeCatalog {
    scopes: Scopes,
}

impl Default for ScopeCatalog {
    fn default() -> Self {
        ScopeCatalog::reference()
    }
}

impl ScopeCatalog {
    /// The 14 scopes of Dynamic's reference page.
    pub fn reference() -> ScopeCatalog {
        ScopeCatalog {
            scopes: REFERENCE_SCOPES.iter().cloned().collect(),
        }
    }

    /// A catalog with no scopes, to build an application's own vocabulary.
    pub fn empty() -> ScopeCatalog {
        ScopeCatalog {
            scopes: Scopes::empty(),
        }
    }

    /// The catalog plus `scope`.
    pub fn with(self, scope: Scope) -> ScopeCatalog {
        self.extend([scope])
    }

    /// The catalog plus `scopes`.
    pub fn extend(self, scopes: impl IntoIterator<Item = Scope>) -> ScopeCatalog {
        ScopeCatalog {
            scopes: self.scopes.iter().cloned().chain(scopes).collect(),
        }
    }

    /// The catalog's scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// True when the catalog grants nothing.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether `scope` is in the catalog.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Reads a scope that must be in the catalog.
    pub fn parse(&self, s: &str) -> Result<Scope, ScopeError> {
        let scope = Scope::new(s)?;
        if self.contains(&scope) {
            Ok(scope)
        } else {
            Err(ScopeError::Unknown { name: s.to_owned() })
        }
    }

    /// The scopes of `scopes` that are not in the catalog, in canonical order.
    pub fn unknown<'a>(&'a self, scopes: &'a Scopes) -> impl Iterator<Item = &'a Scope> + 'a {
        scopes.iter().filter(|s| !self.contains(s))
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Scope, Scopes};
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
    use std::borrow::Cow;

    impl Serialize for Scope {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for Scope {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = <Cow<'de, str>>::deserialize(d)?;
            Scope::new(&s).map_err(de::Error::custom)
        }
    }

    impl Serialize for Scopes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.iter())
        }
    }

    impl<'de> Deserialize<'de> for Scopes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(Vec::<Scope>::deserialize(d)?.into_iter().collect())
        }
    }
}
