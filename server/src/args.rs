//! The command line (clap derive), with the environment variables the `apitoken` CLI reads.

use apitoken::Scope;
use clap::builder::FalseyValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;
use tracing::level_filters::LevelFilter;

const AFTER_HELP: &str = "\
Endpoints (base path /api/v0; the OpenAPI 3.1 description is at /openapi.json):
  POST   /api/v0/user/tokens                                     create a token (201)
  GET    /api/v0/user/tokens                                     list the caller's user's tokens
  DELETE /api/v0/user/tokens/{tokenId}                           revoke one (204)
  POST   /api/v0/environments/{environmentId}/tokens             create a token (201)
  GET    /api/v0/environments/{environmentId}/tokens             list the environment's tokens
  GET    /api/v0/environments/{environmentId}/tokens/events      its event log (?after=N&limit=M)
  DELETE /api/v0/environments/{environmentId}/tokens/{tokenId}   revoke one (204)
  GET    /api/v0/tokens/me                                       the calling token
  POST   /api/v0/credentials/revoke                              report leaked tokens (anyone)
  POST   /secret-scanning/github, /secret-scanning/gitlab        partners' signed leak reports
  GET    /v1/revocable_token_types, POST /v1/revoke_tokens       GitLab's Token Revocation API

Every /api/v0 call but the public report needs `Authorization: Bearer dyn_…`. Issue the
first token with the CLI into the same database, e.g.
  apitoken issue --env 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d --note bootstrap \\
      --scope environment.apiTokens.read --scope environment.apiTokens.write

Storage:
  SQLite file from --db or APITOKEN_DB (default ./apitoken.db; it must exist: the CLI
  creates it); PostgreSQL when --database-url or DATABASE_URL is set. The schema is
  created or upgraded at start-up.

Hash key:
  APITOKEN_HASH_KEY (64 hex characters) or --hash-key-file, as for the CLI; the database
  refuses a key set that lacks a key its tokens were hashed with. To replace the key,
  put the new one first in --hash-key-file and the old one on the next line (or the new
  one in APITOKEN_HASH_KEY and the old one in APITOKEN_RETIRED_HASH_KEYS): tokens of
  the old key keep working and move to the new one when used; `apitoken keys status`
  says when the old key can go.

The address actually bound is printed on standard output (`listening on http://…`, or
https:// with --tls-cert; useful with --listen 127.0.0.1:0); logs go to standard error and never hold a token. SIGINT or
SIGTERM stops the server after the requests in flight, or after --shutdown-timeout.

Cache:
  authentication reads through a cache (--cache-ttl, default 60 s) that follows the
  database's event log: a token revoked through this server stops at once, one revoked
  elsewhere as soon as its event arrives (milliseconds on PostgreSQL, within 200 ms on
  SQLite). While the feed is interrupted, cached tokens are trusted for at most
  --cache-staleness-ms (default 1000), then read again. Several servers may share one
  database. --no-cache (APITOKEN_NO_CACHE=1) reads the store on every request.

Slow clients:
  a connection that takes longer than --header-timeout to send a request's headers,
  --body-timeout to send its body, or --idle-timeout to send its next request is closed
  (without an answer) and logged with its peer address and which timeout it hit.

Lifetime policy (every environment; the CLI reads the same variables):
  --max-lifetime 90d refuses a token asking for a later expiry or none (422
  invalid_expires_at, with the latest allowed instant in its payload); a rotation's
  successor expires within it. --require-expiry refuses one without an expiry.
  --idle-expiry 30d: a token unused that long answers 401 like an expired one and is
  listed as expired (active false, expiresAt when it went idle).

Leaked tokens (the README's section When a token leaks says more):
  a reported token that is live is revoked with everything it created, as a `leaked`
  event naming the reporter and where it was found. GitHub's reports are taken by
  default (--github-keys-url); GitLab's once --gitlab-keys-url is set; a self-managed
  GitLab's once --gitlab-revocation-token-file is. The public endpoint answers 202
  whatever the tokens were, rate-limited per client (--public-revoke-per-minute).

Many connections:
  past --max-connections in all, or --max-connections-per-client from one client (an IPv4
  address or an IPv6 /64), a new connection is answered 503 with Retry-After: 1 and
  closed. Behind a reverse proxy every connection comes from the proxy's address: raise
  --max-connections-per-client (or set it to 0) and limit connections and request rates
  per client at the proxy, which sees the client's own address.";

/// Serves Dynamic's API-token endpoints over a SQLite file or PostgreSQL
#[derive(Debug, Parser)]
#[command(name = "apitoken-server", version, after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Address to listen on (port 0: any free port)
    #[arg(
        long,
        env = "APITOKEN_LISTEN",
        value_name = "ADDRESS",
        default_value = "127.0.0.1:8080"
    )]
    pub(crate) listen: String,

    /// Serve GET /metrics (Prometheus text format) on this address, e.g. 127.0.0.1:9090;
    /// by default no metrics are served. Keep it reachable by the monitoring system only:
    /// the counters tell apart the authentication failures that clients all see as one 401
    #[arg(long, env = "APITOKEN_METRICS_LISTEN", value_name = "ADDRESS")]
    pub(crate) metrics_listen: Option<String>,

    /// Serve HTTPS with this PEM certificate chain (the server's certificate first), with
    /// --tls-key; read again on SIGHUP (connections already open keep theirs). Without
    /// it, plain HTTP, for a reverse proxy in front that holds the certificate
    #[arg(long, env = "APITOKEN_TLS_CERT", value_name = "PATH")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1); refused when group or
    /// others may write it
    #[arg(long, env = "APITOKEN_TLS_KEY", value_name = "PATH")]
    pub(crate) tls_key: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) storage: apitoken_ops::StorageArgs,

    /// More scopes tokens may be given, comma-separated (added to the 14 reference scopes)
    #[arg(
        long,
        env = "APITOKEN_EXTRA_SCOPES",
        value_name = "SCOPES",
        value_delimiter = ','
    )]
    pub(crate) extra_scopes: Vec<Scope>,

    /// The scope a token needs to call POST /oauth/introspect (RFC 7662), which answers
    /// for any token of the caller's environment
    #[arg(
        long,
        env = "APITOKEN_INTROSPECTION_SCOPE",
        value_name = "SCOPE",
        default_value = "environment.apiTokens.read"
    )]
    pub(crate) introspection_scope: Scope,

    /// At most N live (active, unexpired) tokens per environment; creating one more
    /// answers 422 too_many_api_tokens. Default: no limit
    #[arg(long, env = "APITOKEN_MAX_LIVE_TOKENS", value_name = "N")]
    pub(crate) max_live_tokens: Option<NonZeroU32>,

    #[command(flatten)]
    pub(crate) cap: apitoken_ops::CapArgs,

    #[command(flatten)]
    pub(crate) lifetime: apitoken_ops::LifetimeArgs,

    /// At most N tokens in a chain of tokens creating tokens (a token a user created is
    /// at depth 0); a token at depth N creating one answers 403. 0: no bound
    #[arg(
        long,
        env = "APITOKEN_MAX_DELEGATION_DEPTH",
        value_name = "N",
        default_value_t = 8
    )]
    pub(crate) max_delegation_depth: u32,

    /// At most N live tokens created by one token; one more answers 422
    /// too_many_api_tokens. This bounds the work of revoking a token. 0: no bound
    #[arg(
        long,
        env = "APITOKEN_MAX_TOKENS_PER_TOKEN",
        value_name = "N",
        default_value_t = 1000
    )]
    pub(crate) max_tokens_per_token: u32,

    /// Delete tokens revoked or expired longer ago than this, e.g. 90d, checked at start
    /// and then hourly (as `apitoken purge --older-than` does); 0 never deletes any (the
    /// event log and leak reports are still pruned after their retention)
    #[arg(
        long,
        env = "APITOKEN_PURGE_AFTER",
        value_name = "DURATION",
        default_value = "90d",
        value_parser = purge_after
    )]
    pub(crate) purge_after: Duration,

    /// Where GitHub's secret-scanning keys are listed, for POST /secret-scanning/github
    /// (fetched at start-up, then again only for an unknown key, at most once a minute).
    /// An empty value turns the route off (404)
    #[arg(
        long,
        env = "APITOKEN_GITHUB_KEYS_URL",
        value_name = "URL",
        default_value = apitoken::leak::GITHUB_KEYS_URL
    )]
    pub(crate) github_keys_url: String,

    /// A file holding a GitHub token sent with the key list requests (GitHub's API allows
    /// more requests with one); none is needed
    #[arg(long, env = "APITOKEN_GITHUB_TOKEN_FILE", value_name = "PATH")]
    pub(crate) github_token_file: Option<PathBuf>,

    /// Where GitLab's secret-detection keys are listed (the URL GitLab gives its
    /// partners), for POST /secret-scanning/gitlab; until it is set that route answers 404
    #[arg(long, env = "APITOKEN_GITLAB_KEYS_URL", value_name = "URL")]
    pub(crate) gitlab_keys_url: Option<String>,

    /// A file (mode 0600) holding the token a self-managed GitLab presents to the Token
    /// Revocation API (GET /v1/revocable_token_types, POST /v1/revoke_tokens); until it is
    /// set those routes answer 404
    #[arg(
        long,
        env = "APITOKEN_GITLAB_REVOCATION_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub(crate) gitlab_revocation_token_file: Option<PathBuf>,

    /// The token type GET /v1/revocable_token_types names, and POST /v1/revoke_tokens
    /// takes (entries of other types are ignored)
    #[arg(
        long,
        env = "APITOKEN_GITLAB_TOKEN_TYPE",
        value_name = "NAME",
        default_value = "dyn_api_token"
    )]
    pub(crate) gitlab_token_type: String,

    /// Reports POST /api/v0/credentials/revoke takes from one client (an IPv4 address, an
    /// IPv6 /64) a minute, after a burst of --public-revoke-burst; 0 turns the route off
    /// (404). Behind a reverse proxy every request comes from the proxy: limit it there
    #[arg(
        long,
        env = "APITOKEN_PUBLIC_REVOKE_PER_MINUTE",
        value_name = "N",
        default_value_t = 10
    )]
    pub(crate) public_revoke_per_minute: u32,

    /// Reports a client may send to POST /api/v0/credentials/revoke at once before
    /// --public-revoke-per-minute applies
    #[arg(
        long,
        env = "APITOKEN_PUBLIC_REVOKE_BURST",
        value_name = "N",
        default_value = "10"
    )]
    pub(crate) public_revoke_burst: NonZeroU32,

    /// Milliseconds a partner's report may take before it is answered anyway (202; the
    /// revocations go on): GitHub's agreement asks for an answer within 15 s
    #[arg(
        long,
        env = "APITOKEN_LEAK_DEADLINE_MS",
        value_name = "MILLISECONDS",
        default_value = "10000"
    )]
    pub(crate) leak_deadline_ms: NonZeroU32,

    /// Forget the source, URL and type of reported leaks after this long, e.g. 30d (the
    /// `leaked` event itself stays for the event log's retention); purged with the tokens
    #[arg(
        long,
        env = "APITOKEN_LEAK_RETENTION",
        value_name = "DURATION",
        default_value = "30d",
        value_parser = apitoken_ops::duration::parse
    )]
    pub(crate) leak_retention: Duration,

    /// Read the store on every authentication instead of caching. By default the server
    /// caches what authentication reads and follows the database's event log, so that a
    /// token revoked by any process (another server, the CLI) stops working here as soon
    /// as its event arrives
    #[arg(long, env = "APITOKEN_NO_CACHE", value_parser = FalseyValueParser::new())]
    pub(crate) no_cache: bool,

    /// Seconds a cached token is kept before it is read again from the store, however
    /// healthy the event feed (revocations apply sooner: see --cache-staleness-ms)
    #[arg(
        long,
        env = "APITOKEN_CACHE_TTL",
        value_name = "SECONDS",
        default_value = "60"
    )]
    pub(crate) cache_ttl: NonZeroU32,

    /// Milliseconds a cached token is trusted without the event feed vouching for it:
    /// the longest a revocation made elsewhere takes to apply here while the feed is
    /// interrupted (the database unreachable, say). Below the feed's poll interval (1 s
    /// on PostgreSQL, 200 ms on SQLite) cached tokens also go stale between polls, and
    /// are read again
    #[arg(
        long,
        env = "APITOKEN_CACHE_STALENESS_MS",
        value_name = "MILLISECONDS",
        default_value = "1000"
    )]
    pub(crate) cache_staleness_ms: NonZeroU32,

    /// Seconds a client has to send a request's headers, counted from connecting or, on a
    /// kept-alive connection, from the request's first byte
    #[arg(
        long,
        env = "APITOKEN_HEADER_TIMEOUT",
        value_name = "SECONDS",
        default_value = "10"
    )]
    pub(crate) header_timeout: NonZeroU32,

    /// Seconds a client has to send a request's body once its headers have arrived
    #[arg(
        long,
        env = "APITOKEN_BODY_TIMEOUT",
        value_name = "SECONDS",
        default_value = "30"
    )]
    pub(crate) body_timeout: NonZeroU32,

    /// Seconds a kept-alive connection may wait for the client's next request (or for the
    /// client to read an answer); keep it above the idle timeout of a proxy in front
    #[arg(
        long,
        env = "APITOKEN_IDLE_TIMEOUT",
        value_name = "SECONDS",
        default_value = "75"
    )]
    pub(crate) idle_timeout: NonZeroU32,

    /// At most N connections open at once; one more is answered 503 and closed. Lowered
    /// at start-up to fit the open-file limit
    #[arg(
        long,
        env = "APITOKEN_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "1024"
    )]
    pub(crate) max_connections: NonZeroU32,

    /// At most N connections open at once from one client: one IPv4 address, or one IPv6
    /// /64 prefix (one host usually holds a whole /64); one more is answered 503 and
    /// closed, as over --max-connections. 0: no per-client limit. Behind a reverse proxy
    /// every connection comes from the proxy: raise this or set 0, and limit clients at
    /// the proxy
    #[arg(
        long,
        env = "APITOKEN_MAX_CONNECTIONS_PER_CLIENT",
        value_name = "N",
        default_value = "128"
    )]
    pub(crate) max_connections_per_client: u32,

    /// A reverse proxy whose X-Forwarded-For names the client, as a range (10.0.0.5,
    /// 10.0.0.0/8, 2001:db8::/32); repeat it, or separate ranges with commas in the
    /// variable. The header is read from the right, past the trusted proxies; from any
    /// other peer it is ignored. The client's address is what tokens with allowed ranges
    /// (allowedCidrs) are checked against and what lastUsedIp records. Default: none, the
    /// connection's peer is the client
    #[arg(
        long = "trusted-proxy",
        env = "APITOKEN_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub(crate) trusted_proxies: Vec<apitoken::Cidr>,

    /// Seconds the requests in flight get to finish after SIGINT or SIGTERM; the
    /// connections still open then are cut
    #[arg(
        long,
        env = "APITOKEN_SHUTDOWN_TIMEOUT",
        value_name = "SECONDS",
        default_value = "10"
    )]
    pub(crate) shutdown_timeout: u32,

    /// Log format on standard error
    #[arg(
        long,
        env = "APITOKEN_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,

    /// Least severe log level shown: error, warn, info, debug, trace or off
    #[arg(
        long,
        env = "APITOKEN_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub(crate) log_level: LevelFilter,
}

/// `0` (never: zero), or a duration such as 90d.
fn purge_after(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    apitoken_ops::duration::parse(text)
}

/// Seconds as a duration.
pub(crate) fn seconds(n: impl Into<u32>) -> Duration {
    Duration::from_secs(u64::from(n.into()))
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses the command line; on a usage error clap prints it and exits with 2.
pub(crate) fn parse() -> Args {
    let matches = Args::command().get_matches();
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    args.storage.note_sources(&matches);
    args
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}
