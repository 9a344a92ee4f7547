//! `issuer_state`: a `TokenIssuer` over a `MemoryStore`, driven by arbitrary sequences of
//! issue, delegated issue, authenticate, authorize, revoke, rotate and clock moves,
//! against a model of what it must hold.
//!
//! The input is decoded with `arbitrary` into a [`Setup`] (format, hash key, live-token
//! limit, RNG seed) and up to [`MAX_OPS`] [`Op`]s. Each operation's result is predicted by
//! the model and checked, and after every step so are the invariants:
//!
//! - a revoked or expired token never authenticates (with the right error); a live one
//!   always does, with exactly its id, environment, scopes and expiry;
//! - no two tokens share a hash, and each hash finds its own token;
//! - the per-environment limit holds: at any time `t`, the tokens created at or before
//!   `t`, live at `t` and not replaced by a rotation number at most the limit (the store
//!   counts every token live at `t`, so it is at least this strict; a rotated token in its
//!   grace period is not counted, as the store contract says);
//! - listing each environment (in pages) gives exactly the model's records, in creation
//!   order, field by field, last use included.

use super::block_on;
use apitoken::REFERENCE_SCOPES;
use apitoken::StoreError;
use apitoken::{
    Alphabet, Creator, EnvironmentId, Error, HashKey, IssueRequest, IssuedToken, ManualClock,
    MemoryStore, Note, PageRequest, Principal, Scope, Scopes, Token, TokenFormat, TokenId,
    TokenIssuer, TokenStore, UserId,
};
use arbitrary::{Arbitrary, Unstructured};
use chrono::{DateTime, TimeDelta, Utc};
use core::num::NonZeroU32;
use core::time::Duration;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

/// The most operations one input runs (each step re-checks every token).
pub(crate) const MAX_OPS: usize = 64;
/// Environments operations choose from.
const ENVIRONMENTS: u128 = 3;
/// Bit 14 of a scope mask: a scope outside the catalog.
const UNKNOWN_SCOPE: Scope = Scope::from_static("gasless.write");
/// The issuer's last-use interval.
const LAST_USE_INTERVAL: TimeDelta = TimeDelta::minutes(1);

/// How the issuer is configured.
#[derive(Arbitrary, Debug)]
pub(crate) struct Setup {
    /// Which format (of four).
    format: u8,
    /// Whether hashes are keyed.
    keyed: bool,
    /// The live-token limit per environment: 1 to 4.
    limit: u8,
    /// Seeds the issuer's RNG.
    seed: u64,
}

/// One step. Indices pick modulo the number of candidates; times are in seconds.
#[derive(Arbitrary, Debug)]
pub(crate) enum Op {
    /// Issue for a person; bits 0-13 of `scopes` pick reference scopes, bit 14 one outside
    /// the catalog.
    Issue {
        env: u8,
        scopes: u16,
        expires_in: Option<i16>,
    },
    /// Issue for an authenticated token (delegation).
    Delegate {
        parent: u8,
        env: u8,
        scopes: u16,
        expires_in: Option<i16>,
    },
    /// Authenticate a token, optionally as a `Bearer` header value, optionally with one character
    /// replaced by another (position, new character).
    Authenticate {
        token: u8,
        bearer: bool,
        typo: Option<(u8, u8)>,
    },
    /// Authorize a token for an environment and required scopes.
    Authorize { token: u8, env: u8, required: u16 },
    /// Revoke a token, through the given environment.
    Revoke { token: u8, env: u8 },
    /// Revoke an id that was never issued.
    RevokeUnknown { env: u8, id: u64 },
    /// Rotate a token with a grace period.
    Rotate { token: u8, env: u8, grace: u16 },
    /// Move the clock, forwards or backwards.
    Advance { seconds: i16 },
}

/// Decodes an input the way the target does (for `cargo fuzz fmt`-style debugging).
pub(crate) fn decode(data: &[u8]) -> Option<(Setup, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    let setup = Setup::arbitrary(&mut u).ok()?;
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Some((setup, ops))
}

pub(crate) fn issuer_state(data: &[u8]) {
    let Some((setup, ops)) = decode(data) else {
        return;
    };
    let trace = tracing();
    if trace {
        trace_line(format_args!("{setup:?}"));
    }
    let mut world = World::new(&setup);
    world.check_invariants();
    for op in ops {
        if trace {
            trace_line(format_args!("at {}: {op:?}", world.now));
        }
        world.apply(op);
        world.check_invariants();
    }
}

/// `APITOKEN_FUZZ_TRACE=1` prints each decoded operation before it runs, to see where a
/// crash input fails.
fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("APITOKEN_FUZZ_TRACE").is_some())
}

#[allow(clippy::print_stderr)] // asked for with APITOKEN_FUZZ_TRACE
fn trace_line(line: core::fmt::Arguments<'_>) {
    eprintln!("issuer_state: {line}");
}

/// What the model expects of one issued token.
#[derive(Debug)]
struct Expected {
    raw: String,
    id: TokenId,
    env: EnvironmentId,
    scopes: Scopes,
    created_by: Arc<Creator>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    /// The token that replaced it in a rotation (its grace period may still run).
    replaced_by: Option<TokenId>,
    /// The token that created it (delegation).
    created_by_token: Option<TokenId>,
}

impl Expected {
    fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

struct World {
    issuer: TokenIssuer<MemoryStore>,
    format: TokenFormat,
    clock: ManualClock,
    now: DateTime<Utc>,
    limit: usize,
    creator: Arc<Creator>,
    tokens: Vec<Expected>,
}

fn environment(index: u8) -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(0xe0 + u128::from(index) % ENVIRONMENTS))
}

/// The scopes a mask picks, and whether it picks one outside the catalog.
fn scopes_of(mask: u16) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = REFERENCE_SCOPES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| s.clone())
        .collect();
    if mask & (1 << 14) != 0 {
        scopes.push(UNKNOWN_SCOPE);
    }
    scopes
}

fn seconds(s: i16) -> TimeDelta {
    TimeDelta::seconds(i64::from(s))
}

impl World {
    fn new(setup: &Setup) -> World {
        let format = match setup.format % 4 {
            0 => TokenFormat::dynamic(),
            1 => TokenFormat::github("ghp").expect("valid"),
            2 => TokenFormat::new("longprefix16char", Alphabet::GitHub, 64).expect("valid"),
            _ => TokenFormat::new("k", Alphabet::Dynamic, 22).expect("valid"),
        };
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("a valid time");
        let clock = ManualClock::new(now);
        let limit = usize::from(setup.limit % 4 + 1);
        let mut builder = TokenIssuer::builder(MemoryStore::new())
            .format(format)
            .clock(clock.clone())
            .rng(StdRng::seed_from_u64(setup.seed))
            .max_live_tokens_per_environment(NonZeroU32::new(limit as u32).expect("1 to 4"))
            .last_use_interval(Some(Duration::from_secs(60)));
        if setup.keyed {
            builder = builder.hash_key(HashKey::from_bytes([0x5a; 32]));
        }
        World {
            issuer: builder.build(),
            format,
            clock,
            now,
            limit,
            creator: Arc::new(Creator::new(UserId::from_uuid(Uuid::from_u128(7)))),
            tokens: Vec::new(),
        }
    }

    fn pick(&self, index: u8) -> Option<usize> {
        (!self.tokens.is_empty()).then(|| usize::from(index) % self.tokens.len())
    }

    /// Tokens of `env` the store counts against the limit at `now`.
    fn live_in(&self, env: EnvironmentId, except: Option<TokenId>) -> usize {
        self.tokens
            .iter()
            .filter(|t| t.env == env && Some(t.id) != except && t.live_at(self.now))
            .count()
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Issue {
                env,
                scopes,
                expires_in,
            } => {
                let creator = Arc::clone(&self.creator);
                self.issue(environment(env), None, creator, scopes, expires_in);
            }
            Op::Delegate {
                parent,
                env,
                scopes,
                expires_in,
            } => {
                let Some(parent) = self.pick(parent) else {
                    return;
                };
                let Some(principal) = self.authenticate_as_model_says(parent) else {
                    return;
                };
                let creator = Arc::clone(&self.tokens[parent].created_by);
                self.issue(
                    environment(env),
                    Some(principal),
                    creator,
                    scopes,
                    expires_in,
                );
            }
            Op::Authenticate {
                token,
                bearer,
                typo,
            } => {
                let Some(i) = self.pick(token) else {
                    return;
                };
                match typo {
                    None if bearer => {
                        let presented = format!("Bearer {}", self.tokens[i].raw);
                        let result = block_on(self.issuer.authenticate_header(&presented));
                        self.check_authentication(i, result);
                    }
                    None => {
                        self.authenticate_as_model_says(i);
                    }
                    Some((position, character)) => {
                        let mut bytes = self.tokens[i].raw.clone().into_bytes();
                        let position = usize::from(position) % bytes.len();
                        let alnum =
                            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
                        let mut new = alnum[usize::from(character) % 62];
                        if new == bytes[position] {
                            new = alnum[(usize::from(character) + 1) % 62];
                        }
                        bytes[position] = new;
                        let typo = String::from_utf8(bytes).expect("ASCII");
                        let result = if bearer {
                            block_on(self.issuer.authenticate_header(&format!("bearer  {typo}")))
                        } else {
                            block_on(self.issuer.authenticate(&typo))
                        };
                        match result {
                            Err(Error::Malformed(_)) => {}
                            other => panic!("a one-character typo was not refused: {other:?}"),
                        }
                    }
                }
            }
            Op::Authorize {
                token,
                env,
                required,
            } => {
                let Some(i) = self.pick(token) else {
                    return;
                };
                let env = environment(env);
                let required = scopes_of(required);
                let result = block_on(self.issuer.authorize(&self.tokens[i].raw, env, &required));
                let expected = &self.tokens[i];
                if !expected.live_at(self.now) || expected.env == env {
                    // Authentication decides, or authorization by scopes.
                    if expected.live_at(self.now) {
                        let missing = required.iter().find(|s| !expected.scopes.contains(s));
                        match (missing, result) {
                            (None, Ok(principal)) => {
                                self.check_principal(i, &principal);
                                self.used(i);
                            }
                            (Some(scope), Err(Error::MissingScope { id, scope: got })) => {
                                assert_eq!(id, expected.id);
                                assert_eq!(&got, scope);
                                self.used(i);
                            }
                            (missing, result) => {
                                panic!("authorize: expected missing {missing:?}, got {result:?}")
                            }
                        }
                    } else {
                        self.check_authentication(i, result);
                    }
                } else {
                    match result {
                        Err(Error::WrongEnvironment {
                            id,
                            token_environment,
                            requested,
                        }) => {
                            assert_eq!(id, expected.id);
                            assert_eq!(token_environment, expected.env);
                            assert_eq!(requested, env);
                            self.used(i);
                        }
                        other => panic!("authorize in another environment: {other:?}"),
                    }
                }
            }
            Op::Revoke { token, env } => {
                let Some(i) = self.pick(token) else {
                    return;
                };
                let env = environment(env);
                let result = block_on(self.issuer.revoke(env, self.tokens[i].id));
                let now = self.now;
                if self.tokens[i].env == env {
                    let token = result.expect("revoking a token of its environment succeeds");
                    // Every live token it created, directly or not, goes with it.
                    for d in self.descendants(i) {
                        if self.tokens[d].live_at(now) {
                            self.tokens[d].revoked_at = Some(now);
                        }
                    }
                    let expected = &mut self.tokens[i];
                    expected.revoked_at.get_or_insert(now);
                    assert!(!token.active);
                    assert_eq!(token.revoked_at, expected.revoked_at);
                } else {
                    assert!(
                        matches!(result, Err(Error::Store(StoreError::NotFound { .. }))),
                        "revoked through another environment: {result:?}"
                    );
                }
            }
            Op::RevokeUnknown { env, id } => {
                let id = TokenId::from_uuid(Uuid::from_u128(u128::from(id)));
                let result = block_on(self.issuer.revoke(environment(env), id));
                assert!(
                    matches!(result, Err(Error::Store(StoreError::NotFound { .. }))),
                    "revoked an unknown id: {result:?}"
                );
            }
            Op::Rotate { token, env, grace } => {
                let Some(i) = self.pick(token) else {
                    return;
                };
                self.rotate(i, environment(env), grace);
            }
            Op::Advance { seconds: s } => {
                self.clock.advance(seconds(s));
                self.now += seconds(s);
            }
        }
    }

    fn issue(
        &mut self,
        env: EnvironmentId,
        caller: Option<Principal>,
        created_by: Arc<Creator>,
        mask: u16,
        expires_in: Option<i16>,
    ) {
        // Errors list scopes in canonical order, as a `Scopes` holds them.
        let requested: Scopes = scopes_of(mask).into_iter().collect();
        let asked = expires_in.map(|s| self.now + seconds(s));
        // A delegated token expires no later than its creator, and with it when it asks
        // for no expiry.
        let latest = caller.as_ref().and_then(Principal::expires_at);
        let expires_at = asked.or(latest);
        let mut request =
            IssueRequest::new(Note::new("fuzz").expect("valid")).with_scopes(requested.clone());
        if let Some(at) = asked {
            request = request.expires_at(at);
        }
        let result = match &caller {
            Some(principal) => block_on(self.issuer.issue(env, principal, request)),
            None => block_on(self.issuer.issue(env, Arc::clone(&created_by), request)),
        };

        let catalog = self.issuer.scope_catalog();
        let unknown: Vec<&Scope> = requested.iter().filter(|s| !catalog.contains(s)).collect();
        let not_held: Vec<&Scope> = match &caller {
            Some(principal) => requested
                .iter()
                .filter(|s| !principal.scopes().contains(s))
                .collect(),
            None => Vec::new(),
        };
        if let Some(principal) = caller.as_ref().filter(|p| p.environment() != env) {
            assert!(
                matches!(result, Err(Error::WrongEnvironment { id, .. }) if id == principal.token_id()),
                "delegation into another environment: {result:?}"
            );
        } else if !unknown.is_empty() || !not_held.is_empty() {
            match result {
                Err(Error::InvalidScopes {
                    unknown: got_unknown,
                    not_held: got_not_held,
                }) => {
                    assert!(got_unknown.iter().eq(unknown));
                    assert!(got_not_held.iter().eq(not_held));
                }
                other => panic!("scopes not granted were accepted: {other:?}"),
            }
        } else if asked.is_some_and(|at| at <= self.now) {
            assert!(
                matches!(result, Err(Error::InvalidExpiry { .. })),
                "an expiry in the past was accepted: {result:?}"
            );
        } else if let (Some(asked), Some(latest)) = (asked, latest)
            && asked > latest
        {
            assert!(
                matches!(result, Err(Error::InvalidExpiry { latest: got, .. }) if got == Some(latest)),
                "a delegated token outliving its creator was accepted: {result:?}"
            );
        } else if self.live_in(env, None) >= self.limit {
            assert!(
                matches!(result, Err(Error::Store(StoreError::LimitReached { limit, .. })) if limit as usize == self.limit),
                "issued past the limit of {}: {result:?}",
                self.limit
            );
        } else {
            let issued = result.expect("a valid request within the limit is issued");
            let creator = caller.as_ref().map(Principal::token_id);
            self.record(issued, env, created_by, expires_at, creator);
        }
    }

    fn rotate(&mut self, i: usize, env: EnvironmentId, grace: u16) {
        let old_id = self.tokens[i].id;
        let result = block_on(self.issuer.rotate(
            env,
            old_id,
            Duration::from_secs(u64::from(grace)),
        ));
        let old = &self.tokens[i];
        if old.env != env {
            assert!(
                matches!(result, Err(Error::Store(StoreError::NotFound { .. }))),
                "rotated through another environment: {result:?}"
            );
        } else if old
            .expires_at
            .is_some_and(|at| self.now + (at - old.created_at) <= self.now)
        {
            // Only after the clock moved back: the successor would be born expired.
            assert!(
                matches!(result, Err(Error::Store(StoreError::NotLive { id })) if id == old_id),
                "rotated into a successor born expired: {result:?}"
            );
        } else if let Some(replaced_by) = old.replaced_by {
            // Rotated before, live or not.
            assert!(
                matches!(
                    result,
                    Err(Error::Store(StoreError::AlreadyRotated { id, successor }))
                        if id == old_id && successor == Some(replaced_by)
                ),
                "rotated a token a second time: {result:?}"
            );
        } else if !old.live_at(self.now) {
            assert!(
                matches!(result, Err(Error::Store(StoreError::NotLive { id })) if id == old_id),
                "rotated a token that is not live: {result:?}"
            );
        } else if self.live_in(env, Some(old_id)) >= self.limit {
            assert!(
                matches!(result, Err(Error::Store(StoreError::LimitReached { .. }))),
                "rotated past the limit of {}: {result:?}",
                self.limit
            );
        } else {
            let issued = result.expect("rotating a live token within the limit succeeds");
            let now = self.now;
            let mut expires_at = old.expires_at.map(|at| now + (at - old.created_at));
            // A delegated token's successor keeps the end it had.
            if old.created_by_token.is_some() {
                expires_at = expires_at
                    .zip(old.expires_at)
                    .map(|(new, end)| new.min(end));
            }
            let creator = old.created_by_token;
            let created_by = Arc::clone(&old.created_by);
            let scopes = old.scopes.clone();
            assert_eq!(issued.token.scopes, scopes);
            assert_eq!(issued.token.note.as_str(), "fuzz");
            let old = &mut self.tokens[i];
            let grace_end = now + TimeDelta::seconds(i64::from(grace));
            old.expires_at = Some(old.expires_at.map_or(grace_end, |at| at.min(grace_end)));
            old.replaced_by = Some(issued.token.id);
            self.record(issued, env, created_by, expires_at, creator);
        }
    }

    /// The tokens `root` created, directly or through tokens they created, counting what
    /// its rotated predecessors created as its own; not `root` itself.
    fn descendants(&self, root: usize) -> Vec<usize> {
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(root, false)];
        while let Some((node, descendant)) = stack.pop() {
            let id = self.tokens[node].id;
            for (j, t) in self.tokens.iter().enumerate() {
                let next = if t.replaced_by == Some(id) {
                    Some(descendant)
                } else if t.created_by_token == Some(id) {
                    Some(true)
                } else {
                    None
                };
                if let Some(flag) = next
                    && seen.insert((j, flag))
                {
                    if flag {
                        found.push(j);
                    }
                    stack.push((j, flag));
                }
            }
        }
        found
    }

    /// Checks a newly issued token and adds it to the model.
    fn record(
        &mut self,
        issued: IssuedToken,
        env: EnvironmentId,
        created_by: Arc<Creator>,
        expires_at: Option<DateTime<Utc>>,
        created_by_token: Option<TokenId>,
    ) {
        let raw = issued.raw.expose_secret().to_owned();
        let parsed = self.format.parse(&raw).expect("an issued token parses");
        assert_eq!(parsed.checksum(), issued.token.checksum);
        let token = &issued.token;
        assert_eq!(token.environment, env);
        assert_eq!(token.created_at, self.now);
        assert_eq!(token.expires_at, expires_at);
        assert_eq!(token.created_by, created_by);
        assert_eq!(token.created_by_token, created_by_token);
        assert!(token.active && token.revoked_at.is_none() && token.last_used_at.is_none());
        assert!(
            self.tokens.iter().all(|t| t.raw != raw && t.id != token.id),
            "a token or id was issued twice"
        );
        self.tokens.push(Expected {
            raw,
            id: token.id,
            env,
            scopes: token.scopes.clone(),
            created_by,
            created_at: token.created_at,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            replaced_by: None,
            created_by_token,
        });
    }

    /// The store records a use when the last one is absent or at least an interval old,
    /// and never moves it backwards.
    fn used(&mut self, i: usize) {
        let now = self.now;
        let token = &mut self.tokens[i];
        if token
            .last_used_at
            .is_none_or(|last| now - last >= LAST_USE_INTERVAL)
        {
            token.last_used_at = Some(token.last_used_at.map_or(now, |last| last.max(now)));
        }
    }

    /// Authenticates token `i` and checks the result; the principal if it is live.
    fn authenticate_as_model_says(&mut self, i: usize) -> Option<Principal> {
        let result = block_on(self.issuer.authenticate(&self.tokens[i].raw));
        self.check_authentication(i, result)
    }

    fn check_authentication(
        &mut self,
        i: usize,
        result: Result<Principal, Error>,
    ) -> Option<Principal> {
        let expected = &self.tokens[i];
        match result {
            Ok(principal) => {
                assert!(
                    expected.live_at(self.now),
                    "a revoked or expired token authenticated: {expected:?} at {}",
                    self.now
                );
                self.check_principal(i, &principal);
                self.used(i);
                Some(principal)
            }
            Err(Error::Revoked { id, revoked_at }) => {
                assert_eq!(id, expected.id);
                assert!(
                    expected.revoked_at.is_some(),
                    "refused as revoked: {expected:?}"
                );
                assert_eq!(revoked_at, expected.revoked_at);
                None
            }
            Err(Error::Expired { id, expired_at }) => {
                assert_eq!(id, expected.id);
                assert!(
                    expected.revoked_at.is_none() && !expected.live_at(self.now),
                    "refused as expired: {expected:?} at {}",
                    self.now
                );
                assert_eq!(Some(expired_at), expected.expires_at);
                None
            }
            Err(e) => panic!("a live token was refused: {e:?} ({expected:?})"),
        }
    }

    fn check_principal(&self, i: usize, principal: &Principal) {
        let expected = &self.tokens[i];
        assert_eq!(principal.token_id(), expected.id);
        assert_eq!(principal.environment(), expected.env);
        assert_eq!(principal.scopes(), &expected.scopes);
        assert_eq!(principal.expires_at(), expected.expires_at);
        assert_eq!(principal.created_by(), &expected.created_by);
    }

    fn check_invariants(&mut self) {
        // Authentication agrees with the model, token by token.
        for i in 0..self.tokens.len() {
            self.authenticate_as_model_says(i);
        }

        // One hash per token; each finds its own record.
        let hasher = self.issuer.hasher();
        let mut hashes = HashSet::new();
        for expected in &self.tokens {
            let hash = hasher.hash(&expected.raw);
            assert!(hashes.insert(hash), "two tokens share a hash");
            let found = block_on(self.issuer.store().find_by_hash(&hash))
                .expect("MemoryStore never fails")
                .expect("every issued token is stored");
            assert_eq!(found.id, expected.id);
        }
        assert_eq!(self.issuer.store().len(), self.tokens.len());

        for env in (0..ENVIRONMENTS as u8).map(environment) {
            // The per-environment limit.
            let counted = self
                .tokens
                .iter()
                .filter(|t| {
                    t.env == env
                        && t.created_at <= self.now
                        && t.live_at(self.now)
                        && t.replaced_by.is_none()
                })
                .count();
            assert!(
                counted <= self.limit,
                "{counted} live tokens in {env}, limit {}",
                self.limit
            );

            // The store holds exactly the model's records.
            let listed = self.list(env);
            let mut expected: Vec<&Expected> =
                self.tokens.iter().filter(|t| t.env == env).collect();
            expected.sort_by_key(|t| (t.created_at, t.id));
            assert_eq!(listed.len(), expected.len());
            for (token, expected) in listed.iter().zip(expected) {
                assert_eq!(token.id, expected.id);
                assert_eq!(token.environment, env);
                assert_eq!(token.scopes, expected.scopes);
                assert_eq!(token.created_at, expected.created_at);
                assert_eq!(token.expires_at, expected.expires_at);
                assert_eq!(token.revoked_at, expected.revoked_at);
                assert_eq!(token.active, expected.revoked_at.is_none());
                assert_eq!(token.last_used_at, expected.last_used_at);
                assert_eq!(token.is_live_at(self.now), expected.live_at(self.now));
            }
        }
    }

    fn list(&self, env: EnvironmentId) -> Vec<Token> {
        let mut all = Vec::new();
        let mut page = PageRequest::first(3);
        loop {
            let got = block_on(self.issuer.list(env, page)).expect("listing succeeds");
            all.extend(got.tokens);
            match got.next {
                Some(cursor) => page = page.after(cursor),
                None => return all,
            }
        }
    }
}
