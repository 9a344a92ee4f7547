//! Secret hygiene: no `Debug`, `Display`, error message or serde output shows the random
//! part of a token (the issue response's `rawToken` aside), secret types cannot be
//! displayed, cloned or serialized, and the four authentication failures look the same
//! to a client.
//!
//! "Shows" is checked strictly: no 8-character window of the secret may appear, so a
//! partial echo (a truncated token in a message, say) fails as surely as a whole one.
//!
//! Not tested here: that `RawToken` is wiped on drop (a unit test in `src/secret.rs`
//! does it; an integration test cannot look at freed memory), and that `RawToken` and
//! `TokenHash` equality are constant-time (timing cannot be tested reliably; both are
//! written with `subtle::ConstantTimeEq`, see `src/secret.rs` and `src/hash.rs`).

use apitoken::http::UNAUTHORIZED_MESSAGE;
use apitoken::{
    Actor, Caller, Creator, EnvironmentId, Error, HashKey, IssueRequest, IssuedToken, Limits,
    ManualClock, MemoryStore, Note, PageRequest, ParsedToken, RawToken, Revoked, Rotation, Scope,
    Scopes, StoreError, StoredToken, Token, TokenFormat, TokenHash, TokenId, TokenIssuer,
    TokenStore, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::num::NonZeroU32;
use std::time::Duration;
use uuid::Uuid;

const REFERENCE: &str = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";
const KEY_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

// ---------------------------------------------------------------------------------------
// Compile-time: secret types have no `Display`, `Clone` or `Serialize`

/// Fails to compile if `$type` implements `$trait`: with an impl for `Invalid` as well as
/// the blanket one for `()`, the `_` in `AmbiguousIfImpl<_>` cannot be inferred. (The
/// technique of `static_assertions::assert_not_impl_any!`, without the dependency.)
macro_rules! assert_not_impl {
    ($type:ty: $trait:path) => {
        const _: fn() = || {
            #[allow(dead_code)]
            trait AmbiguousIfImpl<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
            #[allow(dead_code)]
            struct Invalid;
            impl<T: ?Sized + $trait> AmbiguousIfImpl<Invalid> for T {}
            let _ = <$type as AmbiguousIfImpl<_>>::some_item;
        };
    };
}

assert_not_impl!(RawToken: std::fmt::Display);
assert_not_impl!(RawToken: Clone);
assert_not_impl!(ParsedToken<'static>: std::fmt::Display);
assert_not_impl!(HashKey: std::fmt::Display);
assert_not_impl!(IssuedToken: std::fmt::Display);
assert_not_impl!(IssuedToken: Clone);
#[cfg(feature = "serde")]
assert_not_impl!(RawToken: serde::Serialize);
#[cfg(feature = "serde")]
assert_not_impl!(ParsedToken<'static>: serde::Serialize);
#[cfg(feature = "serde")]
assert_not_impl!(HashKey: serde::Serialize);
#[cfg(feature = "serde")]
assert_not_impl!(StoredToken: serde::Serialize);
#[cfg(feature = "leak")]
assert_not_impl!(apitoken::leak::LeakedToken: std::fmt::Display);
#[cfg(feature = "leak")]
assert_not_impl!(apitoken::leak::LeakedToken: Clone);
#[cfg(feature = "leak")]
assert_not_impl!(apitoken::leak::LeakedToken: serde::Serialize);
#[cfg(feature = "leak")]
assert_not_impl!(apitoken::leak::Match: serde::Serialize);

// ---------------------------------------------------------------------------------------
// Helpers

/// Every 8-character window of `secret`.
fn windows(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars.windows(8).map(|w| w.iter().collect()).collect()
}

/// The random part of a raw token: between `{prefix}_` and the checksum.
fn random_part(raw: &str) -> &str {
    let (_, body) = raw.split_once('_').unwrap();
    &body[..body.len() - 6]
}

/// Panics if `shown` contains any 8-character window of any of `secrets` made of letters
/// and digits only, the stuff of tokens (so that eight spaces of a presented value do not
/// count against an indented `Debug`).
#[track_caller]
fn assert_hides(what: &str, shown: &str, secrets: &[&str]) {
    for secret in secrets {
        let material = windows(secret)
            .into_iter()
            .filter(|w| w.bytes().all(|b| b.is_ascii_alphanumeric()));
        for w in material {
            assert!(
                !shown.contains(&w),
                "{what} shows `{w}` of a secret:\n{shown}"
            );
        }
    }
}

/// `Debug` in both forms.
#[track_caller]
fn assert_debug_hides(what: &str, value: &dyn std::fmt::Debug, secrets: &[&str]) {
    assert_hides(what, &format!("{value:?}"), secrets);
    assert_hides(what, &format!("{value:#?}"), secrets);
}

/// Everything an error shows: `Debug`, `Display`, its sources, its public message.
#[track_caller]
fn assert_error_hides(what: &str, e: &Error, secrets: &[&str]) {
    assert_debug_hides(what, e, secrets);
    assert_hides(what, &e.to_string(), secrets);
    assert_hides(what, &apitoken::http::public_message(e), secrets);
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        assert_hides(what, &s.to_string(), secrets);
        assert_hides(what, &format!("{s:?}"), secrets);
        source = s.source();
    }
}

fn start() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn env(n: u128) -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(n))
}

/// An operator, who acts on every token of an environment.
fn operator() -> Caller {
    Caller::from(Creator::new(UserId::from_uuid(Uuid::from_u128(0x0ae2))))
}

fn alice() -> Creator {
    Creator {
        alias: Some("alice".into()),
        email: Some("alice@example.com".into()),
        ..Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce)))
    }
}

fn request(scopes: &[Scope]) -> IssueRequest {
    IssueRequest::new(Note::new("hygiene").unwrap())
        .with_scopes(scopes.iter().cloned().collect::<Scopes>())
}

fn issuer(clock: &ManualClock, key: Option<HashKey>) -> TokenIssuer<MemoryStore> {
    let builder = TokenIssuer::builder(MemoryStore::new())
        .clock(clock.clone())
        .rng(StdRng::seed_from_u64(42));
    match key {
        Some(key) => builder.hash_key(key),
        None => builder,
    }
    .build()
}

const READ: Scope = Scope::ENVIRONMENT_API_TOKENS_READ;
const WRITE: Scope = Scope::ENVIRONMENT_API_TOKENS_WRITE;

// ---------------------------------------------------------------------------------------
// Debug of every type that holds or is derived from a raw token

#[tokio::test]
async fn debug_never_shows_the_random_part() {
    let clock = ManualClock::new(start());
    let key = HashKey::from_hex(KEY_HEX).unwrap();
    let issuer = issuer(&clock, Some(key.clone()));
    let issued = issuer
        .issue(env(1), alice(), request(&[READ]))
        .await
        .unwrap();
    let raw = issued.raw.expose_secret().to_owned();
    let secret = random_part(&raw);
    let secrets = [secret, KEY_HEX];
    let checksum = issued.raw.checksum();
    assert_eq!(
        format!("{:?}", issued.raw),
        format!("RawToken(dyn_…{checksum})")
    );

    let parsed = issuer.format().parse(&raw).unwrap();
    assert_eq!(
        format!("{parsed:?}"),
        format!("ParsedToken(dyn_…{checksum})")
    );
    let principal = issuer
        .authenticate_header(&format!("Bearer {raw}"))
        .await
        .unwrap();
    let hash = issuer.hasher().hash(&raw);
    let stored = StoredToken {
        token: issued.token.clone(),
        hash,
        hash_key: issuer.hasher().fingerprint(),
    };
    let page = issuer.list(env(1), PageRequest::first(10)).await.unwrap();
    let owned = parsed.to_raw_token();
    let any = RawToken::parse_any(&raw).unwrap();

    let log = format!("GET /?token={raw} 200");
    let mut findings = apitoken::scan::scan(issuer.format(), log.as_bytes());
    let finding = findings.next().unwrap();
    let shown: [(&str, &dyn std::fmt::Debug); 18] = [
        ("RawToken", &issued.raw),
        ("RawToken (parsed, owned)", &owned),
        ("RawToken (parse_any)", &any),
        ("ParsedToken", &parsed),
        ("IssuedToken", &issued),
        ("Token", &issued.token),
        ("Principal", &principal),
        ("Caller", &Caller::from(&principal)),
        ("StoredToken", &stored),
        ("TokenHash", &hash),
        ("HashKey", &key),
        ("TokenHasher", issuer.hasher()),
        ("TokenIssuer", &issuer),
        ("Page", &page),
        ("TokenFormat", issuer.format()),
        ("Checksum", &checksum),
        ("scan::Findings", &findings),
        ("scan::Finding", &finding),
    ];
    for (what, value) in shown {
        assert_debug_hides(what, value, &secrets);
    }
    // The hash at rest is shown only in part, the key only by its fingerprint.
    assert!(!format!("{hash:?}").contains(&hash.to_hex()[..16]));
    assert_eq!(
        format!("{key:?}"),
        format!("HashKey({})", key.fingerprint())
    );
}

#[tokio::test]
async fn an_issuer_with_many_tokens_shows_none_of_them() {
    let clock = ManualClock::new(start());
    let issuer = issuer(&clock, None);
    let mut raws = Vec::new();
    for i in 0..20 {
        let issued = issuer
            .issue(env(i % 3), alice(), request(&[READ]))
            .await
            .unwrap();
        raws.push(issued.raw.expose_secret().to_owned());
    }
    // Revoke and rotate some, so every kind of record is in the store.
    let first = issuer.list(env(0), PageRequest::first(10)).await.unwrap();
    issuer
        .revoke(env(0), operator(), first.tokens[0].id)
        .await
        .unwrap();
    let rotated = issuer
        .rotate(
            env(0),
            operator(),
            first.tokens[1].id,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    raws.push(rotated.raw.expose_secret().to_owned());
    let secrets: Vec<&str> = raws.iter().map(|r| random_part(r)).collect();
    assert_debug_hides("TokenIssuer", &issuer, &secrets);
    assert_debug_hides("MemoryStore", issuer.store(), &secrets);
    for e in 0..3 {
        let page = issuer.list(env(e), PageRequest::first(100)).await.unwrap();
        assert_debug_hides("Page", &page, &secrets);
    }
}

// ---------------------------------------------------------------------------------------
// Errors of every variant, produced by real failures

/// A store that is always down.
#[derive(Debug)]
struct Down;

fn down() -> StoreError {
    StoreError::Unavailable {
        source: "connection refused (os error 111)".into(),
    }
}

#[async_trait]
impl TokenStore for Down {
    async fn insert(&self, _: StoredToken, _: Limits) -> Result<(), StoreError> {
        Err(down())
    }
    async fn find_by_hash(&self, _: &TokenHash) -> Result<Option<Token>, StoreError> {
        Err(down())
    }
    async fn get(&self, _: EnvironmentId, _: TokenId) -> Result<Option<Token>, StoreError> {
        Err(down())
    }
    async fn list(&self, _: EnvironmentId, _: PageRequest) -> Result<apitoken::Page, StoreError> {
        Err(down())
    }
    async fn revoke(
        &self,
        _: EnvironmentId,
        _: TokenId,
        _: DateTime<Utc>,
        _: Actor,
    ) -> Result<Revoked, StoreError> {
        Err(down())
    }
    async fn rotate(&self, _: Rotation) -> Result<Token, StoreError> {
        Err(down())
    }
    async fn descends_from(
        &self,
        _: EnvironmentId,
        _: TokenId,
        _: TokenId,
    ) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn purge(&self, _: DateTime<Utc>, _: u32) -> Result<u32, StoreError> {
        Err(down())
    }
    async fn record_last_use(
        &self,
        _: TokenId,
        _: DateTime<Utc>,
        _: Option<std::net::IpAddr>,
    ) -> Result<(), StoreError> {
        Err(down())
    }
}

/// The variant's name, from its `Debug`; a store error's as `Store::Kind`.
fn variant(e: &Error) -> String {
    let debug = format!("{e:?}");
    let mut names = debug.split(|c: char| !c.is_ascii_alphanumeric());
    match names.next().unwrap() {
        "Store" => format!("Store::{}", names.next().unwrap()),
        name => name.to_owned(),
    }
}

/// The error of a call that must fail, with what the call tried.
fn failed<T>(what: &'static str, result: Result<T, Error>) -> (&'static str, Error) {
    match result {
        Ok(_) => panic!("{what}: succeeded"),
        Err(e) => (what, e),
    }
}

/// Asserts that no error shows the random part of any of `raws`, and that `errors` hold
/// a real failure of each of `variants` and of no other.
fn assert_errors_hide(errors: &[(&str, Error)], raws: &[&str], variants: &[&str]) {
    let secrets: Vec<&str> = raws.iter().map(|r| random_part(r)).collect();
    let mut seen = std::collections::BTreeSet::new();
    for (what, e) in errors {
        assert_error_hides(what, e, &secrets);
        seen.insert(variant(e));
    }
    assert_eq!(
        seen,
        variants.iter().map(|s| s.to_string()).collect(),
        "one real failure of each variant"
    );
}

/// An issuer on its own clock, with a live token that can read and a revoked one: what
/// the failures below start from.
struct Failing {
    clock: ManualClock,
    issuer: TokenIssuer<MemoryStore>,
    live: IssuedToken,
    revoked: IssuedToken,
}

impl Failing {
    async fn new() -> Failing {
        let clock = ManualClock::new(start());
        let issuer = issuer(&clock, None);
        let live = issuer
            .issue(env(1), alice(), request(&[READ]))
            .await
            .unwrap();
        let revoked = issuer.issue(env(1), alice(), request(&[])).await.unwrap();
        issuer
            .revoke(env(1), operator(), revoked.token.id)
            .await
            .unwrap();
        Failing {
            clock,
            issuer,
            live,
            revoked,
        }
    }
}

/// A token that is one character off `raw`, in its random part.
fn mistyped(raw: &str) -> String {
    let mut bytes = raw.as_bytes().to_vec();
    bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn authentication_errors_never_show_a_token() {
    let f = Failing::new().await;
    let (clock, issuer, revoked) = (&f.clock, &f.issuer, &f.revoked);
    let live_raw = f.live.raw.expose_secret();
    let expiring = issuer
        .issue(
            env(1),
            alice(),
            request(&[]).expires_at(start() + TimeDelta::minutes(5)),
        )
        .await
        .unwrap();
    let unknown = TokenFormat::dynamic().generate(&mut StdRng::seed_from_u64(99));
    let unknown_raw = unknown.expose_secret();
    let mistyped = mistyped(live_raw);

    let mut errors = vec![
        failed("empty", issuer.authenticate("").await),
        failed("bearer only", issuer.authenticate_header("Bearer ").await),
        failed(
            "wrong prefix",
            issuer
                .authenticate(&live_raw.replacen("dyn_", "ghp_", 1))
                .await,
        ),
        failed("truncated", issuer.authenticate(&live_raw[..39]).await),
        failed(
            "extended",
            issuer.authenticate(&format!("{live_raw}x")).await,
        ),
        failed(
            "invalid character",
            issuer
                .authenticate(&live_raw.replacen(&live_raw[20..21], "-", 1))
                .await,
        ),
        failed("checksum", issuer.authenticate(&mistyped).await),
        failed("unknown", issuer.authenticate(unknown_raw).await),
        failed(
            "revoked",
            issuer.authenticate(revoked.raw.expose_secret()).await,
        ),
    ];
    clock.advance(TimeDelta::minutes(10));
    errors.push(failed(
        "expired",
        issuer.authenticate(expiring.raw.expose_secret()).await,
    ));

    let raws = [
        live_raw,
        revoked.raw.expose_secret(),
        expiring.raw.expose_secret(),
        unknown_raw,
        mistyped.as_str(),
    ];
    assert_errors_hide(
        &errors,
        &raws,
        &["Malformed", "Unknown", "Revoked", "Expired"],
    );
    // An unknown token is named by its checksum, as the most any message shows.
    let unknown_error = &errors.iter().find(|(w, _)| *w == "unknown").unwrap().1;
    assert_eq!(
        unknown_error.to_string(),
        format!(
            "unknown token …{}: no token with this value exists in the store",
            unknown.checksum()
        )
    );
}

#[tokio::test]
async fn authorization_and_issue_errors_never_show_a_token() {
    let f = Failing::new().await;
    let (clock, issuer) = (&f.clock, &f.issuer);
    let live_raw = f.live.raw.expose_secret();
    let principal = issuer.authenticate(live_raw).await.unwrap();
    let limited = TokenIssuer::builder(MemoryStore::new())
        .clock(clock.clone())
        .max_live_tokens_per_environment(NonZeroU32::new(1).unwrap())
        .build();
    let only = limited.issue(env(1), alice(), request(&[])).await.unwrap();

    let errors = [
        failed(
            "wrong environment",
            issuer.authorize(live_raw, env(2), &[]).await,
        ),
        failed(
            "missing scope",
            issuer.authorize(live_raw, env(1), &[WRITE]).await,
        ),
        failed(
            "unknown scope",
            issuer
                .issue(
                    env(1),
                    alice(),
                    request(&[Scope::new("billing.read").unwrap()]),
                )
                .await,
        ),
        failed(
            "scope not held",
            issuer.issue(env(1), &principal, request(&[WRITE])).await,
        ),
        failed(
            "expiry in the past",
            issuer
                .issue(env(1), alice(), request(&[]).expires_at(start()))
                .await,
        ),
        failed("limit", limited.issue(env(1), alice(), request(&[])).await),
    ];

    assert_errors_hide(
        &errors,
        &[live_raw, only.raw.expose_secret()],
        &[
            "WrongEnvironment",
            "MissingScope",
            "InvalidScopes",
            "InvalidExpiry",
            "Store::LimitReached",
        ],
    );
}

#[tokio::test]
async fn record_and_store_errors_never_show_a_token() {
    let f = Failing::new().await;
    let (clock, issuer, revoked) = (&f.clock, &f.issuer, &f.revoked);
    let live_raw = f.live.raw.expose_secret();
    let replaced = issuer.issue(env(1), alice(), request(&[])).await.unwrap();
    let successor = issuer
        .rotate(
            env(1),
            operator(),
            replaced.token.id,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let broken = TokenIssuer::builder(Down).clock(clock.clone()).build();

    let errors = [
        failed(
            "not found",
            issuer
                .get(env(1), operator(), TokenId::from_uuid(Uuid::from_u128(7)))
                .await,
        ),
        failed(
            "not live",
            issuer
                .rotate(env(1), operator(), revoked.token.id, Duration::from_secs(1))
                .await,
        ),
        failed(
            "already rotated",
            issuer
                .rotate(
                    env(1),
                    operator(),
                    replaced.token.id,
                    Duration::from_secs(600),
                )
                .await,
        ),
        failed("store down", broken.authenticate(live_raw).await),
        failed(
            "store down on issue",
            broken.issue(env(1), alice(), request(&[])).await,
        ),
    ];

    let raws = [
        live_raw,
        revoked.raw.expose_secret(),
        replaced.raw.expose_secret(),
        successor.raw.expose_secret(),
    ];
    assert_errors_hide(
        &errors,
        &raws,
        &[
            "Store::NotFound",
            "Store::NotLive",
            "Store::AlreadyRotated",
            "Store::Unavailable",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Presented garbage and mutated tokens: errors show the prefix and checksum at most

/// A presented value: a valid token mutated, or garbage.
fn presented() -> impl Strategy<Value = String> {
    let mutated = (
        any::<u64>(),
        0u8..9,
        any::<prop::sample::Index>(),
        any::<char>(),
        0usize..3,
    )
        .prop_map(|(seed, kind, at, c, preset)| {
            let format = [
                TokenFormat::dynamic(),
                TokenFormat::github("ghp").unwrap(),
                TokenFormat::dynamic().with_random_len(50).unwrap(),
            ][preset];
            let raw = format.generate(&mut StdRng::seed_from_u64(seed));
            let mut chars: Vec<char> = raw.expose_secret().chars().collect();
            let i = at.index(chars.len());
            match kind {
                0 => chars[i] = c,
                1 => chars.insert(i, c),
                2 => {
                    chars.remove(i);
                }
                3 => chars.truncate(i),
                4 => {
                    let j = (i + 1) % chars.len();
                    chars.swap(i, j);
                }
                5 => chars.iter_mut().for_each(|c| *c = c.to_ascii_uppercase()),
                6 => {
                    let tail: Vec<char> = chars.clone();
                    chars.extend(tail);
                }
                7 => chars.splice(0..0, "Bearer  ".chars()).for_each(drop),
                _ => chars[i] = if chars[i] == '0' { '1' } else { '0' },
            }
            chars.into_iter().collect()
        });
    prop_oneof![
        3 => mutated,
        1 => any::<String>(),
        1 => "[a-z]{1,5}_[0-9A-Za-z]{20,80}",
        1 => "(Bearer|bearer|Basic) +[ -~]{0,60}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn failures_never_echo_the_presented_value(presented in presented()) {
        let clock = ManualClock::new(start());
        let issuer = issuer(&clock, None);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let secret = [presented.as_str()];
        let checkable = presented.chars().count() >= 8;
        for result in [
            runtime.block_on(issuer.authenticate(&presented)),
            runtime.block_on(issuer.authenticate_header(&presented)),
        ] {
            if let Err(e) = result {
                prop_assert_eq!(apitoken::http::status(&e), 401);
                prop_assert_eq!(apitoken::http::public_message(&e), UNAUTHORIZED_MESSAGE);
                if checkable {
                    assert_error_hides("authenticate", &e, &secret);
                }
            }
        }
        for format in [TokenFormat::dynamic(), TokenFormat::github("ghp").unwrap()] {
            if let (Err(e), true) = (format.parse(&presented), checkable) {
                assert_hides("FormatError", &e.to_string(), &secret);
                assert_hides("FormatError", &format!("{e:?}"), &secret);
            }
        }
        if let (Err(e), true) = (RawToken::parse_any(&presented), checkable) {
            assert_hides("RawToken::parse_any", &e.to_string(), &secret);
            assert_hides("RawToken::parse_any", &format!("{e:?}"), &secret);
        }
        if let (Err(e), true) = (TokenFormat::infer(&presented), checkable) {
            assert_hides("TokenFormat::infer", &e.to_string(), &secret);
        }
    }
}

#[test]
fn format_errors_of_every_kind_never_echo_the_token() {
    let format = TokenFormat::dynamic();
    let body = &REFERENCE[4..];
    let cases = [
        String::new(),
        format!("ghp_{body}"),
        REFERENCE[..30].to_owned(),
        format!("{REFERENCE}{REFERENCE}"),
        REFERENCE.replace('T', "-"),
        REFERENCE.replace('T', "é"),
        REFERENCE.replace("4n3LFC", "4n3LFD"),
        format!("dyn_{}", "x".repeat(36)),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for presented in &cases {
        let e = format.parse(presented).unwrap_err();
        kinds.insert(
            format!("{e:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned(),
        );
        // Nothing of the random part, whatever was presented.
        assert_hides("FormatError", &e.to_string(), &[random_part(REFERENCE)]);
        assert_hides("FormatError", &format!("{e:?}"), &[random_part(REFERENCE)]);
        if presented.chars().count() >= 8 {
            assert_hides("FormatError", &e.to_string(), &[presented]);
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "ChecksumMismatch",
            "Empty",
            "InvalidCharacter",
            "WrongLength",
            "WrongPrefix"
        ]
    );
    let e = TokenFormat::infer("garbage0123456789xyzQ").unwrap_err();
    assert_hides("infer", &e.to_string(), &["garbage0123456789xyzQ"]);
}

// ---------------------------------------------------------------------------------------
// serde

#[cfg(feature = "serde")]
#[tokio::test]
async fn json_shows_the_raw_token_only_in_the_issue_response() {
    let clock = ManualClock::new(start());
    let issuer = issuer(&clock, None);
    let issued = issuer
        .issue(
            env(1),
            alice(),
            request(&[READ]).expires_at(start() + TimeDelta::days(1)),
        )
        .await
        .unwrap();
    let raw = issued.raw.expose_secret().to_owned();
    let secret = random_part(&raw);

    // The issue response: `rawToken`, exactly once, and nowhere else.
    let json = serde_json::to_string(&issued).unwrap();
    assert_eq!(json.matches(&raw).count(), 1);
    for w in windows(secret) {
        assert_eq!(json.matches(&w).count(), 1, "`{w}` in {json}");
    }
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["token"]["rawToken"], raw.as_str());
    let pretty = serde_json::to_string_pretty(&issued).unwrap();
    assert_eq!(pretty.matches(&raw).count(), 1);

    // Every other record: never.
    let principal = issuer.authenticate(&raw).await.unwrap();
    let token = issuer
        .get(env(1), operator(), issued.token.id)
        .await
        .unwrap();
    let listed = issuer.list(env(1), PageRequest::first(10)).await.unwrap();
    let revoked = issuer
        .revoke(env(1), operator(), issued.token.id)
        .await
        .unwrap();
    let shown = [
        ("Token", serde_json::to_string(&issued.token).unwrap()),
        ("Token (get)", serde_json::to_string(&token).unwrap()),
        (
            "Token (list)",
            serde_json::to_string(&listed.tokens).unwrap(),
        ),
        (
            "Token (revoked)",
            serde_json::to_string(&revoked.token).unwrap(),
        ),
        ("Scopes", serde_json::to_string(principal.scopes()).unwrap()),
        (
            "Creator",
            serde_json::to_string(principal.created_by().as_ref()).unwrap(),
        ),
        (
            "Checksum",
            serde_json::to_string(&issued.raw.checksum()).unwrap(),
        ),
    ];
    for (what, json) in &shown {
        assert_hides(what, json, &[secret]);
    }
    // A round trip through JSON keeps the secret in `rawToken` only.
    let back: IssuedToken = serde_json::from_str(&json).unwrap();
    assert_eq!(back.raw, issued.raw);
    assert_debug_hides("IssuedToken (from JSON)", &back, &[secret]);
}

#[cfg(feature = "serde")]
#[test]
fn json_errors_never_echo_a_raw_token() {
    let response = r#"{"token":{"id":"0195501b-0d18-7000-8000-000000000001","rawToken":"RAW","checksum":"CHECK","createdBy":{"id":"0195501b-0d18-7000-8000-000000000002"},"createdAt":"2026-03-01T12:00:00Z","active":true,"note":"n","projectEnvironmentId":"0195501b-0d18-7000-8000-000000000003","scopes":[]}}"#;
    let mistyped = REFERENCE.replace("4n3LFC", "4n3LFD");
    let truncated = &REFERENCE[..39];
    let bad_char = REFERENCE.replace('T', "-");
    for raw in [mistyped.as_str(), truncated, bad_char.as_str()] {
        let json = response.replace("RAW", raw).replace("CHECK", "4n3LFC");
        let e = serde_json::from_str::<IssuedToken>(&json).unwrap_err();
        assert_hides(
            "serde error",
            &e.to_string(),
            &[random_part(REFERENCE), raw],
        );
        let e = serde_json::from_str::<Token>(&json).unwrap_err();
        assert_hides(
            "serde error",
            &e.to_string(),
            &[random_part(REFERENCE), raw],
        );
        let e = serde_json::from_str::<RawToken>(&format!("\"{raw}\"")).unwrap_err();
        assert_hides(
            "serde error",
            &e.to_string(),
            &[random_part(REFERENCE), raw],
        );
    }
    // A valid token whose checksum field disagrees.
    let json = response
        .replace("RAW", REFERENCE)
        .replace("CHECK", "000000");
    let e = serde_json::from_str::<IssuedToken>(&json).unwrap_err();
    assert_hides("serde error", &e.to_string(), &[random_part(REFERENCE)]);
}

// ---------------------------------------------------------------------------------------
// Indistinguishable failures

/// An issuer holding a revoked token, an expired one and one rotated away (its grace
/// period over) among others, and a value of each way a presented token can be refused, labelled
/// with the kind the logs must give it.
async fn refusals() -> (TokenIssuer<MemoryStore>, Vec<(&'static str, String)>) {
    let Failing {
        clock,
        issuer,
        revoked,
        ..
    } = Failing::new().await;
    let expiring = issuer
        .issue(
            env(1),
            alice(),
            request(&[READ]).expires_at(start() + TimeDelta::hours(1)),
        )
        .await
        .unwrap();
    let rotated_away = issuer
        .issue(env(1), alice(), request(&[READ]))
        .await
        .unwrap();
    issuer
        .rotate(
            env(1),
            operator(),
            rotated_away.token.id,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    clock.advance(TimeDelta::hours(2));
    let unknown = TokenFormat::dynamic().generate(&mut StdRng::seed_from_u64(1234));
    let revoked_raw = revoked.raw.expose_secret();
    let mistyped = revoked_raw.replacen(&revoked_raw[39..], "!", 1);

    let presented = vec![
        ("malformed: empty", String::new()),
        ("malformed: garbage", "hunter2".into()),
        ("malformed: bearer only", "Bearer".into()),
        (
            "malformed: wrong prefix",
            format!("ghp_{}", &REFERENCE[4..]),
        ),
        ("malformed: wrong length", REFERENCE[..39].into()),
        ("malformed: bad character", mistyped),
        (
            "malformed: bad checksum",
            REFERENCE.replace("4n3LFC", "4n3LFD"),
        ),
        ("unknown", unknown.expose_secret().into()),
        ("unknown: the reference token", REFERENCE.into()),
        ("revoked", revoked_raw.into()),
        ("expired", expiring.raw.expose_secret().into()),
        (
            "expired: rotated away",
            rotated_away.raw.expose_secret().into(),
        ),
    ];
    (issuer, presented)
}

#[tokio::test]
async fn malformed_unknown_revoked_and_expired_look_the_same_to_a_client() {
    let (issuer, presented) = refusals().await;
    for (what, value) in &presented {
        // As a token, as an `Authorization` header, and through `authorize`, which fails
        // before looking at environment or scopes.
        let errors = [
            issuer.authenticate(value).await.unwrap_err(),
            issuer
                .authenticate_header(&format!("Bearer {value}"))
                .await
                .unwrap_err(),
            issuer.authorize(value, env(1), &[READ]).await.unwrap_err(),
        ];
        for e in errors {
            assert!(e.is_unauthenticated(), "{what}");
            assert!(!e.is_forbidden(), "{what}");
            assert_eq!(apitoken::http::status(&e), 401, "{what}");
            assert_eq!(apitoken::http::code(&e), None, "{what}");
            assert_eq!(
                apitoken::http::public_message(&e),
                UNAUTHORIZED_MESSAGE,
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn the_logs_tell_malformed_unknown_revoked_and_expired_apart() {
    let (issuer, presented) = refusals().await;
    let mut kinds = std::collections::BTreeSet::new();
    for (what, value) in &presented {
        let e = issuer.authenticate(value).await.unwrap_err();
        kinds.insert(variant(&e));
        let expected_kind = match e {
            Error::Malformed(_) => what.starts_with("malformed"),
            Error::Unknown { .. } => what.starts_with("unknown"),
            Error::Revoked { .. } => what.starts_with("revoked"),
            Error::Expired { .. } => what.starts_with("expired"),
            _ => false,
        };
        assert!(expected_kind, "{what}: {e:?}");
        // As an `Authorization` header, it fails the same way.
        let header = issuer
            .authenticate_header(&format!("Bearer {value}"))
            .await
            .unwrap_err();
        assert_eq!(variant(&header), variant(&e), "{what}");
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["Expired", "Malformed", "Revoked", "Unknown"]
    );
}
