//! The OpenAPI 3.1 description: the reference's schemas, as the library writes them.
//!
//! These types only describe; the JSON itself comes from the library's own `Serialize`
//! implementations. The end-to-end tests check each answer against these schemas.

#![allow(dead_code)] // The fields are read by the schema derive only.

use apitoken::MAX_SCOPE_LEN;
use apitoken::ScopeCatalog;
use serde_json::{Value, json};
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{IntoParams, Modify, PartialSchema, ToSchema};

/// A scope a request may name; the enumeration is the server's catalog.
pub(crate) struct ScopeName;

impl PartialSchema for ScopeName {
    fn schema() -> RefOr<Schema> {
        scope_schema(&ScopeCatalog::reference())
    }
}

impl ToSchema for ScopeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scope")
    }
}

/// A scope a stored token holds: any well-formed scope, since a token may hold one outside
/// this server's catalog (issued by the CLI with `--extra-scopes`, or by a server started
/// with more scopes).
pub(crate) struct StoredScopeName;

impl PartialSchema for StoredScopeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A scope the token holds: one of `Scope`, or a scope outside this server's catalog that the token was given elsewhere (dot-separated segments of ASCII letters, digits, `_` and `-`).",
            ))
            .pattern(Some(SCOPE_PATTERN))
            .min_length(Some(1))
            .max_length(Some(MAX_SCOPE_LEN))
            .into()
    }
}

impl ToSchema for StoredScopeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StoredScope")
    }
}

/// A well-formed scope (`Scope::new`).
const SCOPE_PATTERN: &str = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$";

fn scope_schema(catalog: &ScopeCatalog) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Scopes assigned to an API token which they will have access to.",
        ))
        .enum_values(Some(catalog.scopes().iter().map(|s| s.as_str().to_owned())))
        .into()
}

/// Environment API token required fields for creation.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct PostTokenFields {
    /// Name or note to help identify this token and its use: 1 to 100 characters (as sent),
    /// not only whitespace. Refused with 400: a missing or empty note, a longer one, control characters, line and
    /// paragraph separators, bidirectional formatting characters, invisible (default-
    /// ignorable) characters other than the joiners and variation selectors of emoji
    /// sequences, and a well-formed API token anywhere in the note (a secret would be
    /// stored in plain text). The pattern says all of it but the last. Surrounding
    /// whitespace is trimmed.
    #[schema(min_length = 1, max_length = 100, example = "CI deploys")]
    note: String,
    /// Scopes assigned to the token (at most 64 entries); absent means none. A token can
    /// only grant scopes it holds itself.
    #[schema(max_items = 64)]
    scopes: Option<Vec<ScopeName>>,
    /// When the token stops working (an extension of the reference); absent or null means
    /// never. Must be in the future: a past or present instant is refused with 422
    /// `invalid_expires_at`. Under the server's lifetime policy (`--max-lifetime`,
    /// `--require-expiry`) a later instant than allowed, or none, is refused the same way,
    /// with the latest allowed instant in the payload's `latest`.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// The client addresses the token may be used from (an extension): 1 to 32 IPv4 or
    /// IPv6 ranges such as `10.0.0.0/8` or `2001:db8::/32` (one address alone is `/32` or
    /// `/128`; host bits set past the prefix are refused); from anywhere else it is
    /// refused with 403 `ip_not_allowed`. Absent or null: any address, or, when a token
    /// creates the token, the creating token's ranges, which the new ones must lie inside.
    /// Refused with 422 `invalid_allowed_cidrs`.
    #[schema(min_items = 1, max_items = 32, example = json!(["10.0.0.0/8", "2001:db8::/32"]))]
    allowed_cidrs: Option<Vec<CidrText>>,
}

/// An IPv4 or IPv6 range in CIDR notation, or one address (format `cidr`: no bits set
/// past the prefix, which a pattern cannot say).
#[derive(ToSchema)]
#[schema(value_type = String, format = "cidr", example = "10.0.0.0/8", max_length = 64)]
pub(crate) struct CidrText(String);

/// How a rotation treats the token it replaces. The body is optional: without one the old
/// token stops at once.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct RotateTokenFields {
    /// How long the replaced token keeps working, in seconds: 0 (the default) to 2592000
    /// (30 days), and never past the replaced token's own expiry. Anything else is refused
    /// with 400.
    #[schema(minimum = 0, maximum = 2592000, example = 3600)]
    grace_period_seconds: Option<u32>,
}

/// Who created a token.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct CreatedBy {
    #[schema(format = "uuid")]
    id: String,
    alias: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    #[schema(format = Email)]
    email: Option<String>,
}

/// The environment a token belongs to.
#[derive(ToSchema)]
pub(crate) struct ProjectEnvironment {
    #[schema(format = "uuid")]
    id: String,
}

/// A newly created token, with its plaintext: the only time it is revealed.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct TokenWithRaw {
    #[schema(format = "uuid")]
    id: String,
    /// The token itself: `dyn_` + 30 random characters + the 6-character checksum.
    #[schema(example = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC")]
    raw_token: String,
    /// The last 6 characters of the raw token.
    #[schema(example = "4n3LFC")]
    checksum: String,
    created_by: CreatedBy,
    #[schema(format = DateTime)]
    created_at: String,
    /// Whether the token can be used at the time of the answer: false once it is revoked
    /// or expired, or unused for longer than the server's idle expiry (`--idle-expiry`).
    /// Only active tokens can be used.
    active: Option<bool>,
    note: Option<String>,
    #[schema(format = "uuid")]
    project_environment_id: Option<String>,
    project_environment: Option<ProjectEnvironment>,
    scopes: Option<Vec<StoredScopeName>>,
    /// When the token stops working, if ever (an extension of the reference). A token the
    /// idle expiry ended shows the instant it went idle here, with `active` false.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// When the token last authenticated, recorded at most once a minute (an extension).
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
    /// The client address of that use (an extension); absent when not known.
    #[schema(example = "198.51.100.7")]
    last_used_ip: Option<IpText>,
    /// The client addresses the token may be used from, in the form the server keeps
    /// (`/32` or `/128` written out); absent: any (an extension).
    allowed_cidrs: Option<Vec<CidrText>>,
    /// When the token was revoked (an extension).
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    /// The token that created this one, when a token did (an extension): it expires no
    /// later than that token and is revoked with it.
    #[schema(format = "uuid")]
    created_by_token_id: Option<String>,
}

/// A token's record, never with its plaintext.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct Token {
    #[schema(format = "uuid")]
    id: String,
    /// The last 6 characters of the raw token.
    #[schema(example = "4n3LFC")]
    checksum: String,
    created_by: CreatedBy,
    #[schema(format = DateTime)]
    created_at: String,
    /// Whether the token can be used at the time of the answer: false once it is revoked
    /// or expired, or unused for longer than the server's idle expiry (`--idle-expiry`).
    /// Only active tokens can be used.
    active: Option<bool>,
    note: Option<String>,
    #[schema(format = "uuid")]
    project_environment_id: Option<String>,
    project_environment: Option<ProjectEnvironment>,
    scopes: Option<Vec<StoredScopeName>>,
    /// When the token stops working, if ever (an extension of the reference). A token the
    /// idle expiry (`--idle-expiry`) ended shows the instant it went idle here, with
    /// `active` false; a token in use shows its own expiry (the idle end moves with each
    /// use).
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// When the token last authenticated, recorded at most once a minute (an extension);
    /// an idle expiry counts from it (from `createdAt` when absent).
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
    /// The client address of the last use (an extension); absent when not known.
    last_used_ip: Option<IpText>,
    /// The client addresses the token may be used from; absent: any (an extension).
    allowed_cidrs: Option<Vec<CidrText>>,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    /// The token that created this one, when a token did (an extension): it expires no
    /// later than that token and is revoked with it.
    #[schema(format = "uuid")]
    created_by_token_id: Option<String>,
}

/// The answer to a create request.
#[derive(ToSchema)]
pub(crate) struct CreatedToken {
    token: TokenWithRaw,
}

/// One token.
#[derive(ToSchema)]
pub(crate) struct OneToken {
    token: Token,
}

/// A page of a list of tokens, oldest first.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct TokenList {
    tokens: Vec<Token>,
    /// Where the next page starts, when one follows: pass it back as `cursor` (the
    /// `Link` header has the whole next URL). Absent on the last page.
    #[schema(pattern = "^[0-9a-f]{48}$")]
    next_cursor: Option<String>,
}

/// Which page of a list, as query parameters. The server reads these three and ignores
/// the rest.
#[derive(IntoParams, serde::Deserialize)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// At most this many tokens (1 to 1000; default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<String>,
    /// The `nextCursor` of the page before, as it was given; absent for the first page.
    #[param(value_type = Option<String>, pattern = "^[0-9a-f]{48}$")]
    pub(crate) cursor: Option<String>,
    /// `live` (the default): the tokens that work now; `all`: revoked and expired ones
    /// too, idle-expired ones included (`active: false`).
    #[param(value_type = Option<String>, pattern = "^(live|all)$")]
    pub(crate) state: Option<String>,
}

/// Which events, as query parameters. The server reads these two and ignores the rest.
#[derive(IntoParams, serde::Deserialize)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// The sequence number of the last event read: the `nextCursor` of the answer before;
    /// 0 (the default) for the start of the log.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 9007199254740991_u64)]
    pub(crate) after: Option<String>,
    /// At most this many events (1 to 1000; default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<String>,
}

/// What happened to a token.
#[derive(ToSchema)]
#[schema(as = EventKind, rename_all = "lowercase")]
pub(crate) enum EventKindName {
    /// Created (by a create request, or as a rotation's successor).
    Issued,
    /// Revoked: by the actor (no `cause`), or along with the token `cause`.
    Revoked,
    /// Rotated: `successor` replaces it.
    Rotated,
    /// Reported leaked.
    Leaked,
}

/// Who made a change.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum ActorType {
    /// A person (an operator, a dashboard user): `actorId` is the user's id.
    User,
    /// A token: `actorId` is the token's id.
    Token,
    /// Whoever reported a leak (`reporter` says who): `actorId` is null.
    Reporter,
}

/// Who reported a leak.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum Reporter {
    /// GitHub secret scanning.
    Github,
    /// GitLab secret detection, or a self-managed GitLab.
    Gitlab,
    /// Anyone, through `POST /api/v0/credentials/revoke`.
    Public,
    /// An operator (`apitoken scan --revoke`).
    Operator,
}

/// One change to one token, as the event log keeps it. A change that touches several
/// tokens (a revocation and its cascade, a rotation) is one event per token, with
/// consecutive sequence numbers.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct Event {
    /// Its place in the log: the whole store's, growing in commit order (so an
    /// environment's events skip numbers).
    #[schema(minimum = 1, example = 42)]
    sequence: u64,
    /// When the change happened.
    #[schema(format = DateTime)]
    at: String,
    /// The token's environment.
    #[schema(format = "uuid")]
    environment_id: String,
    /// The token changed.
    #[schema(format = "uuid")]
    token_id: String,
    kind: EventKindName,
    actor_type: ActorType,
    /// Who made the change: for an issued token its creator (the creating token for one a
    /// token created); for a revocation that came with another's, whoever revoked that
    /// one; null for a reporter.
    #[schema(format = "uuid")]
    actor_id: Option<String>,
    /// For a revocation that came with another's: the token whose revocation took this
    /// one (a token it descends from, or its successor). Absent otherwise.
    #[schema(format = "uuid", nullable = false)]
    cause: Option<String>,
    /// For a rotation: the token that replaces this one. Absent otherwise.
    #[schema(format = "uuid", nullable = false)]
    successor: Option<String>,
    /// For a `leaked` event, and a revocation that came with one: who reported the leak.
    #[schema(nullable = false)]
    reporter: Option<Reporter>,
    /// What the reporter said the token was found in (GitHub's `commit`, say); forgotten
    /// after the leak retention (`--leak-retention`, 30 days).
    #[schema(nullable = false, max_length = 256)]
    leak_source: Option<String>,
    /// Where the reporter found it (a URL, or a file and line); forgotten after the leak
    /// retention.
    #[schema(nullable = false, max_length = 8192)]
    leak_url: Option<String>,
    /// The reporter's name for the kind of token; forgotten after the leak retention.
    #[schema(nullable = false, max_length = 256)]
    leak_type: Option<String>,
}

/// A page of an environment's event log, oldest first.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct EventList {
    events: Vec<Event>,
    /// Where the next read starts: pass it back as `after`. After the last event here, or
    /// the `after` given when there was none; always present, so a client polls with it.
    #[schema(pattern = "^[0-9]+$", example = "42")]
    next_cursor: String,
}

/// The events after the cursor were pruned before they were read.
#[derive(ToSchema)]
pub(crate) struct EventsPrunedBody {
    error: String,
    /// Always `events_pruned`.
    #[schema(pattern = "^events_pruned$", example = "events_pruned")]
    code: String,
    payload: ResumeAfter,
}

/// Where to read on after events were pruned.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct ResumeAfter {
    /// Where the log now starts: resynchronise (list the tokens with `state=all`), then
    /// read on with this as `after`.
    #[schema(pattern = "^[0-9]+$", example = "97")]
    resume_after: String,
}

/// An error: 400, 401, 403, 405, 413, 415, 431, 500, 501, 503.
#[derive(ToSchema)]
pub(crate) struct ErrorBody {
    #[schema(example = "invalid or expired API token")]
    error: String,
}

/// An IPv4 or IPv6 address.
#[derive(ToSchema)]
#[schema(value_type = String, example = "198.51.100.7")]
pub(crate) struct IpText(String);

/// A valid token that may not do this: `code` is `ip_not_allowed` when the token allows
/// other client addresses, absent otherwise.
#[derive(ToSchema)]
pub(crate) struct ForbiddenBody {
    #[schema(
        example = "token 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d lacks the scope `environment.apiTokens.write` this operation requires"
    )]
    error: String,
    #[schema(pattern = "^ip_not_allowed$", example = "ip_not_allowed")]
    code: Option<String>,
}

/// No such token, or no such route: the reference's `NotFound`, whose `code` Dynamic's
/// client requires.
#[derive(ToSchema)]
pub(crate) struct NotFoundBody {
    #[schema(
        example = "no token 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d in environment 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7e"
    )]
    error: String,
    /// Always `not_found`.
    #[schema(example = "not_found", pattern = "^not_found$")]
    code: String,
}

/// A request that is well-formed but cannot be carried out.
#[derive(ToSchema)]
pub(crate) struct UnprocessableBody {
    error: String,
    /// `invalid_scopes`, `too_many_api_tokens`, `invalid_expires_at` or
    /// `invalid_allowed_cidrs`.
    #[schema(example = "invalid_scopes")]
    code: String,
    /// Details for programs, always of the same shape for a code: `invalid_scopes`:
    /// `unknown` and `notHeld` (at most 10 names each), then `omitted` (`{unknown,
    /// notHeld}` counts) when names were left out; `invalid_expires_at`: `expiresAt` (the
    /// requested expiry; null when none was given and the lifetime policy requires one, or
    /// for a rotation's successor), the server's `now` and `latest`, the latest expiry
    /// allowed (the earlier of the creating token's, when a token that expires creates
    /// one, and now plus the maximum lifetime, `--max-lifetime`; else null);
    /// `invalid_allowed_cidrs`: `notCovered`, the ranges outside the creating token's, and
    /// `allowed`, the creating token's (empty and null when a range could not be read);
    /// `too_many_api_tokens`:
    /// `projectEnvironmentId` and `limit` (of the live tokens, of all the tokens kept,
    /// or of the live tokens the calling token created, whichever was reached).
    #[schema(value_type = Object)]
    payload: Value,
}

/// What `/healthz` and a ready `/readyz` answer.
#[derive(ToSchema)]
pub(crate) struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(pattern = "^(ok|ready)$", example = "ready")]
    status: String,
}

/// What `/readyz` answers when the server cannot serve requests.
#[derive(ToSchema)]
pub(crate) struct Unready {
    /// Always `unready`.
    #[schema(pattern = "^unready$")]
    status: String,
    /// Which check failed, in words; the server's log has the full reason.
    error: String,
    /// `store_unavailable`, `schema_not_prepared`, `schema_too_new`, `hash_key_mismatch` or
    /// `store_failed`.
    #[schema(
        pattern = "^(store_unavailable|schema_not_prepared|schema_too_new|hash_key_mismatch|store_failed)$"
    )]
    code: String,
}

/// What the route behind the gateway requires, in the query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerifyQuery {
    /// Scopes the token must hold, comma-separated (the parameter may also repeat).
    #[param(value_type = String, required = false)]
    scope: Option<String>,
    /// The environment the token must belong to (by default, any: the token's own).
    #[param(value_type = String, required = false, format = "uuid")]
    environment: Option<String>,
}

/// What the route behind the gateway requires, in headers (for gateways that add headers
/// more easily than query parameters, such as Envoy).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct VerifyHeaders {
    /// Scopes the token must hold, separated by spaces or commas.
    #[param(rename = "X-Required-Scopes", value_type = String, required = false)]
    required_scopes: Option<String>,
    /// The environment the token must belong to.
    #[param(rename = "X-Required-Environment", value_type = String, required = false, format = "uuid")]
    required_environment: Option<String>,
}

/// The signature of a GitHub secret-scanning report.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct GitHubSignature {
    /// The identifier of the key in GitHub's key list (`--github-keys-url`) that signed
    /// the body.
    #[param(rename = "Github-Public-Key-Identifier")]
    key_identifier: String,
    /// The signature: standard base64 of an ASN.1 DER ECDSA P-256 / SHA-256 signature over
    /// the raw body bytes.
    #[param(rename = "Github-Public-Key-Signature")]
    signature: String,
}

/// The signature of a GitLab secret-detection report.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct GitLabSignature {
    /// The identifier of the key in GitLab's key list (`--gitlab-keys-url`) that signed
    /// the body.
    #[param(rename = "Gitlab-Public-Key-Identifier")]
    key_identifier: String,
    /// The signature: standard base64 of an ASN.1 DER ECDSA P-256 / SHA-256 signature over
    /// the raw body bytes.
    #[param(rename = "Gitlab-Public-Key-Signature")]
    signature: String,
}

/// One token a partner found.
#[derive(ToSchema)]
pub(crate) struct PartnerMatch {
    /// The string found: ours, someone else's, or nothing at all.
    #[schema(min_length = 1, max_length = 1024)]
    token: String,
    /// The partner's name for the kind of token (the pattern registered with it).
    #[schema(max_length = 256)]
    r#type: String,
    /// Where it was found (may be empty).
    #[schema(max_length = 8192)]
    url: Option<String>,
    /// What it was found in (GitHub's `commit`, `content`, `issue_comment`, …; GitLab
    /// sends none).
    #[schema(max_length = 256)]
    source: Option<String>,
}

/// What became of one match, as GitHub's feedback asks.
#[derive(ToSchema)]
pub(crate) struct LeakFeedback {
    /// The hex (lower-case) SHA-256 of the token as reported: never the token itself.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    token_hash: String,
    /// The match's `type`.
    token_type: String,
    label: LeakLabel,
}

/// `true_positive` for a token of ours (revoked now, revoked or expired before);
/// `false_positive` otherwise.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum LeakLabel {
    TruePositive,
    FalsePositive,
}

/// The token types GitLab may send to `POST /v1/revoke_tokens`.
#[derive(ToSchema)]
pub(crate) struct RevocableTokenTypes {
    types: Vec<String>,
}

/// One token a self-managed GitLab found.
#[derive(ToSchema)]
pub(crate) struct GitLabRevocation {
    /// The token type (one of `GET /v1/revocable_token_types`; others are ignored).
    r#type: String,
    /// The string found.
    token: String,
    /// Where it was found.
    location: Option<String>,
}

/// Tokens someone found.
#[derive(ToSchema)]
pub(crate) struct CredentialsRevocation {
    /// The tokens, as found (`dyn_…`): at most 1,000.
    #[schema(max_items = 1000)]
    credentials: Vec<String>,
}

/// Taken: the same answer whatever the tokens were.
#[derive(ToSchema)]
pub(crate) struct CredentialsAccepted {
    /// How many strings were taken (as many as sent).
    #[schema(minimum = 0, maximum = 1000)]
    accepted: u32,
}

/// An introspection request (RFC 7662 §2.1), as a form.
#[derive(ToSchema)]
pub(crate) struct IntrospectionRequest {
    /// The token to check.
    token: String,
    /// Ignored: there is one kind of token.
    token_type_hint: Option<String>,
}

/// An introspection answer (RFC 7662 §2.2): `{"active": false}` alone, or every member.
#[derive(ToSchema)]
pub(crate) struct IntrospectionAnswer {
    active: bool,
    /// The token's scopes, separated by spaces.
    scope: Option<String>,
    /// The id of the user the token acts for.
    #[schema(format = "uuid")]
    sub: Option<String>,
    /// When the token expires, in seconds since the Unix epoch; absent if never.
    exp: Option<i64>,
    /// When the token was created, in seconds since the Unix epoch.
    iat: Option<i64>,
    /// The token's id.
    #[schema(format = "uuid")]
    jti: Option<String>,
    /// Always `dyn_api_token`.
    token_type: Option<String>,
    /// The token's environment.
    #[schema(format = "uuid")]
    environment_id: Option<String>,
}

/// Who a verified token is.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct VerifiedToken {
    #[schema(format = "uuid")]
    token_id: String,
    #[schema(format = "uuid")]
    environment_id: String,
    scopes: Vec<StoredScopeName>,
    /// The id of the user the token acts for.
    #[schema(format = "uuid")]
    created_by: String,
}

/// The environment of the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub(crate) struct EnvironmentPath {
    /// The environment's id.
    #[param(value_type = String, format = "uuid")]
    environment_id: String,
}

/// A token of the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub(crate) struct TokenPath {
    /// The token's id.
    #[param(value_type = String, format = "uuid")]
    token_id: String,
}

/// The bearer scheme every operation uses.
pub(crate) struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token: `Authorization: Bearer dyn_…`. Issue the first one with the `apitoken` CLI.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "gitlabRevocationToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "The token in --gitlab-revocation-token-file, alone or after `Bearer `.",
            ))),
        );
    }
}

/// The document served at `/openapi.json`: the derived description, with the `Scope`
/// enumeration set to the scopes this server grants, the note's pattern, and the answers
/// any operation can get besides its own (405, 431, 503; 413 and 415 for a body).
pub(crate) fn document(mut openapi: OpenApi, catalog: &ScopeCatalog) -> Result<String, String> {
    if let Some(components) = openapi.components.as_mut() {
        components
            .schemas
            .insert("Scope".to_owned(), scope_schema(catalog));
    }
    let mut doc = serde_json::to_value(&openapi).map_err(|e| e.to_string())?;
    let fields = &mut doc["components"]["schemas"]["PostTokenFields"]["properties"];
    fields["note"]["pattern"] = Value::from(note_pattern());
    // One branch per type, so that generators give the string its format.
    let expires_at = &mut fields["expiresAt"];
    let description = expires_at["description"].take();
    *expires_at = json!({
        "description": description,
        "oneOf": [{ "type": "string", "format": "date-time" }, { "type": "null" }],
    });
    doc["components"]["responses"] = shared_responses();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (method, operation) in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.iter_mut())
        {
            let Some(responses) = operation["responses"].as_object_mut() else {
                continue;
            };
            let mut refer = |status: &str, name: &str| {
                // `/readyz` says itself what its 503 means.
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
            };
            refer("405", "MethodNotAllowed");
            refer("431", "HeadersTooLarge");
            refer("503", "Unavailable");
            if method == "post" {
                refer("413", "BodyTooLarge");
                refer("415", "UnsupportedMediaType");
            }
        }
    }
    serde_json::to_string(&doc).map_err(|e| e.to_string())
}

fn shared_responses() -> Value {
    let error =
        json!({ "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } });
    json!({
        "MethodNotAllowed": {
            "description": "The path exists but does not take this method; `Allow` lists those it takes",
            "headers": { "Allow": { "schema": { "type": "string" }, "description": "The methods the path takes" } },
            "content": error,
        },
        "HeadersTooLarge": {
            "description": format!(
                "The request's method, target and headers together are larger than {} KiB, or it has more than {} header fields. Past the HTTP layer's own bounds (a request head over 128 KiB, over 200 fields) the connection is answered 431 without a body and closed",
                crate::serve::MAX_HEADER_BYTES / 1024,
                crate::serve::MAX_HEADERS
            ),
            "content": error,
        },
        "Unavailable": {
            "description": "The token store is unavailable (e.g. the database cannot be reached); for a leak report, also the partner's key list, or a full queue of public reports: retry after the number of seconds in `Retry-After`",
            "headers": { "Retry-After": {
                "schema": { "type": "integer", "minimum": 0 },
                "description": format!("Seconds to wait before retrying ({})", apitoken::http::RETRY_AFTER_SECONDS),
            } },
            "content": error,
        },
        "BodyTooLarge": {
            "description": format!("The body is larger than {} KiB", crate::body::MAX_BODY_BYTES / 1024),
            "content": error,
        },
        "UnsupportedMediaType": {
            "description": "The body is not `application/json`",
            "content": error,
        },
    })
}

/// The note rules of `Note::new`, but for the embedded token, as an ECMA-262 pattern that
/// Python's `re` reads the same way: surrounding whitespace, then visible characters (each
/// maybe followed by a variation selector, joined by zero-width joiners) separated by
/// inline whitespace.
fn note_pattern() -> String {
    // Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` removes.
    const SPACE: &str =
        r"[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";
    // Whitespace allowed inside a note (the rest are control characters or separators).
    const INLINE: &str = r"[ \u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]";
    // Not whitespace, control, separator, bidirectional or default-ignorable.
    const VISIBLE_BMP: &str = r"\u0000-\u0020\u007F-\u00A0\u00AD\u034F\u061C\u115F\u1160\u1680\u17B4\u17B5\u180B-\u180F\u2000-\u200F\u2028-\u202F\u205F-\u206F\u3000\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8";
    // Beyond the BMP the characters themselves: `\u{…}` is not read alike everywhere.
    const VISIBLE_ASTRAL: &str = "\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0000}-\u{E0FFF}";
    let visible = format!("[^{VISIBLE_BMP}{VISIBLE_ASTRAL}]");
    let cluster = format!(r"{visible}[\uFE00-\uFE0F]?(?:\u200D{visible}[\uFE00-\uFE0F]?)*");
    format!("^{SPACE}*{cluster}(?:{INLINE}*{cluster})*{SPACE}*$")
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "apitoken-server",
        description = "Dynamic's API-token endpoints, served by the `apitoken` library. Every operation needs `Authorization: Bearer <token>`; 401 answers are identical for malformed, unknown, revoked and expired tokens. A token with `allowedCidrs` is accepted only from a client address inside them (403 `ip_not_allowed` otherwise); the client is the connection's peer, or, from a proxy the server trusts (`--trusted-proxy`), the address its `X-Forwarded-For` names, and such a proxy's malformed `X-Forwarded-For` is answered 400 `invalid_forwarded_for` on any route.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearerAuth" = [])),
    tags(
        (name = "tokens", description = "API tokens"),
        (name = "operations", description = "Probes for the platform that runs the server; no token needed"),
        (name = "gateway", description = "Verification for a gateway in front of other services"),
        (name = "leaks", description = "Leaked tokens reported and revoked: secret-scanning partners' signed reports, GitLab's Token Revocation API, and anyone who found one")
    )
)]
pub(crate) struct ApiDoc;
