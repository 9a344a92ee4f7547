//! `issuer_state`: a `TokenIssuer` over a `MemoryStore`, driven by arbitrary sequences of
//! issue, delegated issue, authenticate, authorize, get, revoke and rotate (by the
//! operator or by a token), purge and clock moves, against a model of what it must hold.
//!
//! The input is decoded with `arbitrary` into a [`Setup`] (format, hash key, limits, RNG
//! seed) and up to [`MAX_OPS`] [`Op`]s. Each operation's result is predicted by the model
//! and checked (a revocation's cascade token by token, the authority of a delegated
//! caller, the order of a rotation's refusals, what a purge deletes), and after every step
//! so are the invariants:
//!
//! - a revoked or expired token never authenticates (with the right error); a live one
//!   always does, with exactly its id, environment, scopes and expiry;
//! - no two tokens share a hash, and each hash finds its own token;
//! - the per-environment limit holds: at any time `t`, the tokens created at or before
//!   `t`, live at `t` and not replaced by a rotation number at most the limit (the store
//!   counts every token live at `t`, so it is at least this strict; a rotated token in its
//!   grace period is not counted, as the store contract says);
//! - no environment holds more tokens than its cap;
//! - listing each environment (in pages) gives exactly the model's records, in creation
//!   order, field by field, last use included, and listing its live tokens gives exactly
//!   the live ones;
//! - a purged token is unknown.

use super::block_on;
use apitoken::REFERENCE_SCOPES;
use apitoken::StoreError;
use apitoken::{
    Alphabet, Caller, Creator, EnvironmentId, Error, HashKey, IssueRequest, IssuedToken, Limits,
    ManualClock, MemoryStore, Note, PageRequest, Principal, Scope, Scopes, Token, TokenFormat,
    TokenId, TokenIssuer, TokenStore, UserId,
};
use apitoken::{EventCursor, EventKind};
use arbitrary::{Arbitrary, Unstructured};
use chrono::{DateTime, TimeDelta, Utc};
use core::num::NonZeroU32;
use core::time::Duration;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{BTreeSet, HashSet};
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
    /// The cap on tokens per environment: none (0 mod 16), else 3 to 17.
    cap: u8,
    /// The deepest delegation: none (0 mod 4), else 1 to 3.
    depth: u8,
    /// The most live tokens one token creates: none (0 mod 4), else 1 to 3.
    fan_out: u8,
}

/// One step. Indices pick modulo the number of candidates; times are in seconds. `by`
/// is who acts: the operator (`None`), or the token it picks, authenticated first (a
/// step whose token does not authenticate is skipped).
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
    Revoke { token: u8, env: u8, by: Option<u8> },
    /// Revoke an id that was never issued.
    RevokeUnknown { env: u8, id: u64 },
    /// Rotate a token with a grace period.
    Rotate {
        token: u8,
        env: u8,
        grace: u16,
        by: Option<u8>,
    },
    /// Move the clock, forwards or backwards.
    Advance { seconds: i16 },
    /// Read a token's record.
    Get { token: u8, env: u8, by: Option<u8> },
    /// Delete the tokens that ended more than `older_than` seconds ago.
    Purge { older_than: u16 },
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
    limits: Limits,
    creator: Arc<Creator>,
    tokens: Vec<Expected>,
    /// The raw tokens purged: they must be unknown.
    purged: Vec<String>,
    /// The events the store must have appended since `events_read`: token, kind, and the
    /// other token the kind names.
    events_due: Vec<(TokenId, EventKind)>,
    events_read: EventCursor,
}

/// How an operation is asked for: by the operator, or by a token (delegated or not).
enum Acting {
    Operator,
    Token { index: usize, principal: Principal },
}

impl Acting {
    fn caller(&self, operator: &Arc<Creator>) -> Caller {
        match self {
            Acting::Operator => Caller::User(Arc::clone(operator)),
            Acting::Token { principal, .. } => Caller::Token(principal.clone()),
        }
    }
}

/// `n` mod `modulus` as a limit, where 0 is none.
fn bound(n: u8, modulus: u8, offset: u32) -> Option<NonZeroU32> {
    match n % modulus {
        0 => None,
        k => NonZeroU32::new(u32::from(k) + offset),
    }
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
        let limits = Limits {
            max_live: NonZeroU32::new(limit as u32),
            max_total: bound(setup.cap, 16, 2),
            max_depth: bound(setup.depth, 4, 0),
            max_per_creator: bound(setup.fan_out, 4, 0),
        };
        let mut builder = TokenIssuer::builder(MemoryStore::new())
            .format(format)
            .clock(clock.clone())
            .rng(StdRng::seed_from_u64(setup.seed))
            .limits(limits)
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
            limits,
            creator: Arc::new(Creator::new(UserId::from_uuid(Uuid::from_u128(7)))),
            tokens: Vec::new(),
            purged: Vec::new(),
            events_due: Vec::new(),
            events_read: EventCursor::START,
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
            Op::Revoke { token, env, by } => {
                let Some(i) = self.pick(token) else {
                    return;
                };
                let Some(acting) = self.acting(by) else {
                    return;
                };
                let env = environment(env);
                let caller = acting.caller(&self.creator);
                let result = block_on(self.issuer.revoke(env, caller, self.tokens[i].id));
                if self.refused_authority(&acting, i, env, result.as_ref().err()) {
                    return;
                }
                if self.tokens[i].env != env {
                    assert!(
                        matches!(result, Err(Error::Store(StoreError::NotFound { .. }))),
                        "revoked through another environment: {result:?}"
                    );
                    return;
                }
                let revoked = result.expect("revoking a token of its environment succeeds");
                let now = self.now;
                let mut expected = BTreeSet::new();
                if self.tokens[i].revoked_at.is_none() {
                    let root = self.tokens[i].id;
                    self.events_due
                        .push((root, EventKind::Revoked { cause: None }));
                    self.events_due.extend(
                        revoked
                            .cascade
                            .iter()
                            .map(|&id| (id, EventKind::Revoked { cause: Some(root) })),
                    );
                    self.tokens[i].revoked_at = Some(now);
                    for d in self.cascade(i) {
                        if self.tokens[d].live_at(now) {
                            self.tokens[d].revoked_at = Some(now);
                            expected.insert(self.tokens[d].id);
                        }
                    }
                }
                let cascade: BTreeSet<TokenId> = revoked.cascade.iter().copied().collect();
                assert_eq!(
                    cascade.len(),
                    revoked.cascade.len(),
                    "a token twice in a cascade"
                );
                assert_eq!(
                    cascade, expected,
                    "the cascade of revoking {:?}",
                    self.tokens[i].id
                );
                let expected = &self.tokens[i];
                assert!(!revoked.token.active);
                assert_eq!(revoked.token.revoked_at, expected.revoked_at);
            }
            Op::RevokeUnknown { env, id } => {
                let id = TokenId::from_uuid(Uuid::from_u128(u128::from(id)));
                let operator = Arc::clone(&self.creator);
                let result = block_on(self.issuer.revoke(environment(env), operator, id));
                assert!(
                    matches!(result, Err(Error::Store(StoreError::NotFound { .. }))),
                    "revoked an unknown id: {result:?}"
                );
            }
            Op::Rotate {
                token,
                env,
                grace,
                by,
            } => {
                let Some(i) = self.pick(token) else {
                    return;
                };
                let Some(acting) = self.acting(by) else {
                    return;
                };
                self.rotate(i, environment(env), grace, &acting);
            }
            Op::Get { token, env, by } => {
                let Some(i) = self.pick(token) else {
                    return;
                };
                let Some(acting) = self.acting(by) else {
                    return;
                };
                let env = environment(env);
                let caller = acting.caller(&self.creator);
                let result = block_on(self.issuer.get(env, caller, self.tokens[i].id));
                if self.refused_authority(&acting, i, env, result.as_ref().err()) {
                    return;
                }
                if self.tokens[i].env != env {
                    assert!(
                        matches!(result, Err(Error::Store(StoreError::NotFound { .. }))),
                        "read through another environment: {result:?}"
                    );
                    return;
                }
                let token = result.expect("reading a token of its environment succeeds");
                self.check_record(&token, &self.tokens[i]);
            }
            Op::Purge { older_than } => self.purge(older_than),
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
        } else if let Some(refusal) = self.bounds_refuse(env, caller.as_ref()) {
            refusal.check(&result);
        } else {
            let issued = result.expect("a valid request within the limits is issued");
            let creator = caller.as_ref().map(Principal::token_id);
            self.record(issued, env, created_by, expires_at, creator);
        }
    }

    /// Which bound of the limits an issue in `env` by `caller` breaks, in the store's
    /// order: the creating token's depth and its live tokens, the live limit, the cap.
    fn bounds_refuse(&self, env: EnvironmentId, caller: Option<&Principal>) -> Option<Refusal> {
        if let Some(principal) = caller {
            let creator = principal.token_id();
            let parent = self.index_of(creator).expect("the caller is a known token");
            if let Some(limit) = self.limits.max_depth
                && self.depth(parent) >= limit.get() as usize
            {
                return Some(Refusal::TooDeep { creator, limit });
            }
            if let Some(limit) = self.limits.max_per_creator {
                let live = self
                    .tokens
                    .iter()
                    .filter(|t| t.created_by_token == Some(creator) && t.live_at(self.now))
                    .count();
                if live >= limit.get() as usize {
                    return Some(Refusal::TooManyDelegated { creator, limit });
                }
            }
        }
        self.environment_refuses(env, None)
    }

    /// Whether the environment's own bounds refuse one more token (one replacing
    /// `replacing`): the live limit, then the cap.
    fn environment_refuses(
        &self,
        env: EnvironmentId,
        replacing: Option<TokenId>,
    ) -> Option<Refusal> {
        if self.live_in(env, replacing) >= self.limit {
            return Some(Refusal::Live { limit: self.limit });
        }
        let held = self.tokens.iter().filter(|t| t.env == env).count();
        match self.limits.max_total {
            Some(limit) if held >= limit.get() as usize => Some(Refusal::Full { limit }),
            _ => None,
        }
    }

    fn rotate(&mut self, i: usize, env: EnvironmentId, grace: u16, acting: &Acting) {
        let old_id = self.tokens[i].id;
        let caller = acting.caller(&self.creator);
        let result = block_on(self.issuer.rotate(
            env,
            caller,
            old_id,
            Duration::from_secs(u64::from(grace)),
        ));
        if self.refused_authority(acting, i, env, result.as_ref().err()) {
            return;
        }
        let old = &self.tokens[i];
        let now = self.now;
        let mut expires_at = old.expires_at.map(|at| now + (at - old.created_at));
        // A delegated token's successor keeps the end it had.
        if old.created_by_token.is_some() {
            expires_at = expires_at
                .zip(old.expires_at)
                .map(|(new, end)| new.min(end));
        }
        // The store's order: found, rotated before, live (and a successor that would not
        // be born expired), then the environment's bounds.
        if old.env != env {
            assert!(
                matches!(result, Err(Error::Store(StoreError::NotFound { .. }))),
                "rotated through another environment: {result:?}"
            );
        } else if let Some(replaced_by) = old.replaced_by {
            // Rotated before, live or not, whatever its successor would be.
            assert!(
                matches!(
                    result,
                    Err(Error::Store(StoreError::AlreadyRotated { id, successor }))
                        if id == old_id && successor == Some(replaced_by)
                ),
                "rotated a token a second time: {result:?}"
            );
        } else if !old.live_at(now) || expires_at.is_some_and(|at| at <= now) {
            assert!(
                matches!(result, Err(Error::Store(StoreError::NotLive { id })) if id == old_id),
                "rotated a token that is not live (or into a successor born expired): {result:?}"
            );
        } else if let Some(refusal) = self.environment_refuses(env, Some(old_id)) {
            refusal.check(&result);
        } else {
            let issued = result.expect("rotating a live token within the limits succeeds");
            let creator = old.created_by_token;
            let created_by = Arc::clone(&old.created_by);
            let scopes = old.scopes.clone();
            assert_eq!(issued.token.scopes, scopes);
            assert_eq!(issued.token.note.as_str(), "fuzz");
            let old = &mut self.tokens[i];
            let grace_end = now + TimeDelta::seconds(i64::from(grace));
            old.expires_at = Some(old.expires_at.map_or(grace_end, |at| at.min(grace_end)));
            old.replaced_by = Some(issued.token.id);
            let successor = issued.token.id;
            self.record(issued, env, created_by, expires_at, creator);
            self.events_due
                .push((old_id, EventKind::Rotated { successor }));
        }
    }

    /// Who acts, per `by`: the operator, or the token it picks if that token
    /// authenticates (else the step is skipped).
    fn acting(&mut self, by: Option<u8>) -> Option<Acting> {
        let Some(by) = by else {
            return Some(Acting::Operator);
        };
        let index = self.pick(by)?;
        let principal = self.authenticate_as_model_says(index)?;
        Some(Acting::Token { index, principal })
    }

    /// Whether acting on token `target` through `env` is refused for want of authority
    /// (after checking that it is, with the right error): a token of another environment,
    /// or a delegated token outside its reach.
    fn refused_authority(
        &self,
        acting: &Acting,
        target: usize,
        env: EnvironmentId,
        error: Option<&Error>,
    ) -> bool {
        let Acting::Token { index, principal } = acting else {
            return false;
        };
        let caller = &self.tokens[*index];
        assert_eq!(principal.is_delegated(), caller.created_by_token.is_some());
        if caller.env != env {
            assert!(
                matches!(error, Some(Error::WrongEnvironment { id, .. }) if *id == caller.id),
                "a token acted in another environment: {error:?}"
            );
            return true;
        }
        let delegated = caller.created_by_token.is_some();
        if delegated && *index != target && !self.descends_from(target, *index, env) {
            assert!(
                matches!(
                    error,
                    Some(Error::OutsideDelegation { caller: by, id })
                        if *by == caller.id && *id == self.tokens[target].id
                ),
                "a delegated token acted outside its reach: {error:?}"
            );
            return true;
        }
        false
    }

    /// Whether token `i`, looked for in `env`, is token `ancestor` or reaches it along
    /// creating tokens and successors.
    fn descends_from(&self, i: usize, ancestor: usize, env: EnvironmentId) -> bool {
        if self.tokens[i].env != env {
            return false;
        }
        let mut seen = HashSet::new();
        let mut stack = vec![i];
        while let Some(node) = stack.pop() {
            if node == ancestor {
                return true;
            }
            let t = &self.tokens[node];
            for next in [t.created_by_token, t.replaced_by].into_iter().flatten() {
                if let Some(j) = self.index_of(next)
                    && self.tokens[j].env == env
                    && seen.insert(j)
                {
                    stack.push(j);
                }
            }
        }
        false
    }

    /// How many creating tokens are above token `i`.
    fn depth(&self, i: usize) -> usize {
        let mut depth = 0;
        let mut at = i;
        while let Some(parent) = self.tokens[at]
            .created_by_token
            .and_then(|id| self.index_of(id))
        {
            depth += 1;
            at = parent;
        }
        depth
    }

    fn index_of(&self, id: TokenId) -> Option<usize> {
        self.tokens.iter().position(|t| t.id == id)
    }

    /// What revoking `root` now walks to: its predecessors, whatever their state, and the
    /// live tokens it (or they) created, through live tokens; not `root` itself.
    fn cascade(&self, root: usize) -> Vec<usize> {
        let now = self.now;
        let mut found = Vec::new();
        let mut seen = HashSet::from([root]);
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            let id = self.tokens[node].id;
            for (j, t) in self.tokens.iter().enumerate() {
                let next =
                    t.replaced_by == Some(id) || (t.created_by_token == Some(id) && t.live_at(now));
                if next && seen.insert(j) {
                    found.push(j);
                    stack.push(j);
                }
            }
        }
        found
    }

    /// Purges, and removes from the model what the store must have deleted: the tokens
    /// that ended before the cut-off and created no unrevoked token left, until none is
    /// left.
    fn purge(&mut self, older_than: u16) {
        let older_than = Duration::from_secs(u64::from(older_than));
        let result = block_on(self.issuer.purge(older_than)).expect("MemoryStore never fails");
        let cut = self.now - TimeDelta::seconds(older_than.as_secs() as i64);
        assert_eq!(result.ended_before, cut, "the cut-off");
        let mut expected = 0;
        loop {
            let doomed: Vec<usize> = (0..self.tokens.len())
                .filter(|&i| {
                    let t = &self.tokens[i];
                    let ended = t.revoked_at.is_some_and(|at| at < cut)
                        || t.expires_at.is_some_and(|at| at < cut);
                    ended
                        && !self.tokens.iter().any(|other| {
                            other.created_by_token == Some(t.id) && other.revoked_at.is_none()
                        })
                })
                .collect();
            if doomed.is_empty() {
                break;
            }
            expected += doomed.len() as u64;
            for i in doomed.into_iter().rev() {
                let gone = self.tokens.remove(i);
                assert!(!gone.live_at(self.now), "the model purged a live token");
                self.purged.push(gone.raw);
            }
        }
        assert_eq!(result.tokens, expected, "purged older than {older_than:?}");
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
        self.events_due.push((token.id, EventKind::Issued));
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
        assert_eq!(
            principal.is_delegated(),
            expected.created_by_token.is_some()
        );
    }

    fn check_invariants(&mut self) {
        // The event log holds what each change appended, in order, and nothing else.
        let mut appended = Vec::new();
        loop {
            let page = match block_on(self.issuer.store().events_since(
                None,
                self.events_read,
                1000,
            )) {
                Ok(page) => page,
                // Purged past (only after 30 days of fuzzed time): start again from the head.
                Err(StoreError::EventsPruned { resumed, .. }) => {
                    self.events_read = resumed;
                    self.events_due.clear();
                    appended.clear();
                    continue;
                }
                Err(e) => panic!("the event log failed: {e}"),
            };
            if page.events.is_empty() {
                break;
            }
            self.events_read = page.next;
            appended.extend(page.events.into_iter().map(|e| (e.token, e.kind)));
        }
        assert_eq!(
            appended,
            core::mem::take(&mut self.events_due),
            "the event log is not what the changes appended"
        );

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
            for (token, expected) in listed.iter().zip(&expected) {
                assert_eq!(token.environment, env);
                self.check_record(token, expected);
            }
            if let Some(cap) = self.limits.max_total {
                assert!(
                    expected.len() <= cap.get() as usize,
                    "{} tokens in {env}, cap {cap}",
                    expected.len()
                );
            }

            // Listing the live ones gives exactly those.
            let live: Vec<TokenId> = self
                .list_as(env, PageRequest::first(2).live_at(self.now))
                .iter()
                .map(|t| t.id)
                .collect();
            let expected_live: Vec<TokenId> = expected
                .iter()
                .filter(|t| t.live_at(self.now))
                .map(|t| t.id)
                .collect();
            assert_eq!(live, expected_live, "the live tokens of {env}");
        }

        // A purged token is unknown.
        for raw in &self.purged {
            assert!(
                matches!(
                    block_on(self.issuer.authenticate(raw)),
                    Err(Error::Unknown { .. })
                ),
                "a purged token is still known"
            );
        }
    }

    /// A record as the store gives it back is the model's, field by field.
    fn check_record(&self, token: &Token, expected: &Expected) {
        assert_eq!(token.id, expected.id);
        assert_eq!(token.environment, expected.env);
        assert_eq!(token.scopes, expected.scopes);
        assert_eq!(token.created_at, expected.created_at);
        assert_eq!(token.expires_at, expected.expires_at);
        assert_eq!(token.revoked_at, expected.revoked_at);
        assert_eq!(token.active, expected.revoked_at.is_none());
        assert_eq!(token.last_used_at, expected.last_used_at);
        assert_eq!(token.created_by_token, expected.created_by_token);
        assert_eq!(token.is_live_at(self.now), expected.live_at(self.now));
    }

    fn list(&self, env: EnvironmentId) -> Vec<Token> {
        self.list_as(env, PageRequest::first(3))
    }

    fn list_as(&self, env: EnvironmentId, first: PageRequest) -> Vec<Token> {
        let mut all = Vec::new();
        let mut page = first;

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

/// A bound an issue or a rotation is refused at, as the model predicts it.
enum Refusal {
    TooDeep { creator: TokenId, limit: NonZeroU32 },
    TooManyDelegated { creator: TokenId, limit: NonZeroU32 },
    Live { limit: usize },
    Full { limit: NonZeroU32 },
}

impl Refusal {
    /// Checks that `result` is this refusal.
    fn check<T: core::fmt::Debug>(&self, result: &Result<T, Error>) {
        let ok = match (self, result) {
            (
                Refusal::TooDeep { creator, limit },
                Err(Error::Store(StoreError::DelegationTooDeep {
                    creator: c,
                    limit: l,
                })),
            ) => c == creator && *l == limit.get(),
            (
                Refusal::TooManyDelegated { creator, limit },
                Err(Error::Store(StoreError::TooManyDelegated {
                    creator: c,
                    limit: l,
                    ..
                })),
            ) => c == creator && *l == limit.get(),
            (
                Refusal::Live { limit },
                Err(Error::Store(StoreError::LimitReached { limit: l, .. })),
            ) => *l as usize == *limit,
            (
                Refusal::Full { limit },
                Err(Error::Store(StoreError::EnvironmentFull { limit: l, .. })),
            ) => *l == limit.get(),
            _ => false,
        };
        assert!(ok, "expected a refusal at a bound, got {result:?}");
    }
}
