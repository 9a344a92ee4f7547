//! The command line's grammar (clap derive) and turning clap's errors into one line.

use apitoken::{Alphabet, EnvironmentId, EventCursor, Note, Scope, TokenId, UserId};
use apitoken_ops::duration;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const AFTER_HELP: &str = "\
Examples:
  # Issue a token into ./apitoken.db (created on first use). The JSON holds the raw
  # token: it is shown this once, only its hash is stored.
  apitoken issue --env 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d --note \"CI deploys\" \\
      --scope environment.apiTokens.read --expires-in 90d

  # Verify it, reading it from standard input so it stays out of the shell history.
  printf '%s' \"$TOKEN\" | apitoken verify - --env 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d

  apitoken list --env 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d
  apitoken revoke --env 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d --id <TOKEN_ID>
  apitoken purge --older-than 90d
  apitoken scan .env config/*.yaml

  # A token leaked: revoke every live token in these files (and what it created).
  apitoken scan --revoke leaked.log

  # Who did what to which token, oldest first; then every change as it happens, one
  # JSON object per line.
  apitoken events --env 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d
  apitoken events --follow --json --after 1200

Storage:
  SQLite file from --db or APITOKEN_DB (default ./apitoken.db); PostgreSQL when
  --database-url or DATABASE_URL is set, or --database-url-file or
  APITOKEN_DATABASE_URL_FILE names a file holding the URL. The schema is created or
  upgraded on every run. When the URL has no password, it comes from PGPASSWORD,
  PGPASSFILE or ~/.pgpass: other local users can read a command line, not those.

Hash key:
  APITOKEN_HASH_KEY (64 hex characters, e.g. from `openssl rand -hex 32`) or
  --hash-key-file; without one, tokens are hashed unkeyed. A database records the keys
  its tokens were hashed with and refuses a key set that lacks one. To replace the key,
  list the new one first and the old one after it (--hash-key-file, one a line; or
  APITOKEN_RETIRED_HASH_KEYS): see `apitoken keys --help`.

Files:
  The database (and its -wal and -shm), the key file and the URL file belong to the
  user that runs apitoken, mode 0600: a new database is created so. A key or URL file
  that others may write is refused; one others may read, and such a database, get a
  `warning:` line with the `chmod 600` that fixes it.

Exit status:
  0 success; 1 verification failed, token invalid (inspect), tokens found (scan) or
  live tokens found and revoked (scan --revoke);
  2 usage, input or storage error (one line on standard error says what to do).";

/// Issue, verify and revoke API tokens in a SQLite or PostgreSQL database
///
/// Tokens look like dyn_ + 30 random characters + a 6-character checksum. Only a hash
/// of each token is stored; the raw token is printed once, by `issue` and `rotate`.
/// `inspect` and `scan` check and find tokens in text without any database.
#[derive(Debug, Parser)]
#[command(name = "apitoken", version, after_help = AFTER_HELP, verbatim_doc_comment)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes, before or after the command's name.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    #[command(flatten)]
    pub(crate) storage: apitoken_ops::StorageArgs,

    #[command(flatten)]
    pub(crate) cap: apitoken_ops::CapArgs,

    #[command(flatten)]
    pub(crate) lifetime: apitoken_ops::LifetimeArgs,

    /// More scopes `issue` accepts, comma-separated
    ///
    /// Added to the 14 reference scopes: your application's own vocabulary, e.g.
    /// gasless.read,gasless.write.
    #[arg(
        long,
        verbatim_doc_comment,
        global = true,
        env = "APITOKEN_EXTRA_SCOPES",
        value_name = "SCOPES",
        value_delimiter = ','
    )]
    pub(crate) extra_scopes: Vec<Scope>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Issue a token and print it as JSON: {"token": {…, "rawToken": "dyn_…"}}
    ///
    /// The raw token is in token.rawToken and is shown only this once: store it now.
    /// Without --created-by, the token is recorded as created by the fixed "apitoken CLI"
    /// user be9ff319-9cc8-507a-b470-228869fbc201 (alias apitoken-cli).
    #[command(verbatim_doc_comment)]
    Issue(IssueArgs),
    /// List an environment's tokens, oldest first (never the raw tokens).
    List(ListArgs),
    /// Show one token (never the raw token).
    Get(GetArgs),
    /// Revoke a token: from now on it is refused (revoking twice is harmless)
    Revoke(RevokeArgs),
    /// Replace a token with a new one and print the new one as JSON, like `issue`
    ///
    /// The new token has the same note, scopes, creator and lifetime length. The old
    /// token keeps working for --grace, then fails as expired. A token is rotated only
    /// once: to rotate again, rotate the new token.
    #[command(verbatim_doc_comment)]
    Rotate(RotateArgs),
    /// Check a token against the database: prints who it is, or exits with 1
    ///
    /// The token is read from standard input. Without --env and --scope it only
    /// authenticates (well-formed, known, not revoked, not expired); with them, it also
    /// checks the environment and each scope. On failure the reason (malformed, unknown,
    /// revoked, expired, wrong environment, missing scope) goes to standard error; the
    /// token itself is never printed.
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Check a token's format alone, without any database; exits with 1 if invalid
    ///
    /// Checks prefix, length, characters and checksum, and prints the prefix and the
    /// checksum, or the reason the token is not valid. Without format options the format
    /// is inferred from the token (the prefix before the first `_`, the length, and
    /// whichever digit order the checksum matches).
    #[command(verbatim_doc_comment)]
    Inspect(InspectArgs),
    /// Find well-formed tokens (valid checksum) in files or standard input
    ///
    /// Prints one line per token, FILE:LINE:COLUMN: CHECKSUM (counted from 1; the column
    /// counts bytes), never the token itself. Exits with 1 when a token is found, 0 when
    /// none is, 2 when a file cannot be read.
    #[command(verbatim_doc_comment)]
    Scan(ScanArgs),
    /// Delete the tokens that were revoked or expired more than --older-than ago
    ///
    /// Live tokens are never deleted, nor a token that created one still kept (it goes
    /// once they have). Deleted tokens no longer count against
    /// --max-tokens-per-environment; presented, they are refused as unknown tokens are.
    /// Runs in short batches, so other writers are not held up.
    #[command(verbatim_doc_comment)]
    Purge(PurgeArgs),
    /// Print the audit trail: who did what to which token, oldest first
    ///
    /// Each token issued, revoked, rotated or reported leaked, and by which user or token:
    /// from the start of the log or from --after, to its end; with --follow, then every
    /// change as it happens, until Ctrl-C or SIGTERM. A revocation that took other tokens
    /// with it prints one event for each, with `cause` naming the token revoked; a
    /// rotation names its `successor`. `apitoken purge` deletes events older than 30 days.
    #[command(verbatim_doc_comment)]
    Events(EventsArgs),
    /// List the scopes `issue` accepts (the reference scopes and --extra-scopes).
    Scopes,
    /// The hash keys: which still hash live tokens, and retiring one for good
    ///
    /// To replace the hash key without revoking tokens: put a new key on the first line
    /// of --hash-key-file and the old one on the next (or the new one in
    /// APITOKEN_HASH_KEY, the old one in APITOKEN_RETIRED_HASH_KEYS). Tokens of the old
    /// key keep working and move to the new key when used. `keys status` says how many
    /// live tokens each key still hashes and the day it can go; `keys retire` then
    /// forgets it, after which drop it from the configuration.
    #[command(subcommand, verbatim_doc_comment)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Per hash key: its live tokens, how many never expire, the latest expiry, and the
    /// day it can be retired without revoking anything
    Status(KeysStatusArgs),
    /// Retire a hash key for good: refused while live tokens need it
    ///
    /// FINGERPRINT is as `keys status` prints it (key:… or unkeyed). With
    /// --revoke-remaining, its live tokens are revoked first (each logged as
    /// `key_retired`, with what it created). Afterwards, drop the key from
    /// --hash-key-file (or APITOKEN_RETIRED_HASH_KEYS). The current key cannot be retired.
    #[command(verbatim_doc_comment)]
    Retire(KeysRetireArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeysStatusArgs {
    /// Print `[{"fingerprint", "current", "live", "neverExpiring", "latestExpiry",
    /// "retirableOn"}]`.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct KeysRetireArgs {
    /// The key's fingerprint: key: and 16 hex digits, or unkeyed.
    #[arg(value_name = "FINGERPRINT", value_parser = clap::value_parser!(apitoken::KeyFingerprint))]
    pub(crate) fingerprint: apitoken::KeyFingerprint,
    /// Revoke the live tokens it still hashes, then retire it.
    #[arg(long)]
    pub(crate) revoke_remaining: bool,
    /// Print `{"retired": "key:…", "revoked": [ids]}`.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Only this environment's events.
    #[arg(long, value_name = "UUID", value_parser = environment_id)]
    pub(crate) env: Option<EnvironmentId>,
    /// Start after the event with this sequence number (default 0: from the first)
    ///
    /// To continue where an earlier run stopped, give the last sequence number it
    /// printed (the table run says it on standard error: `next cursor: N`).
    #[arg(long, value_name = "CURSOR", verbatim_doc_comment,
          default_value_t = EventCursor::START,
          value_parser = clap::value_parser!(EventCursor))]
    pub(crate) after: EventCursor,
    /// Then print each new event as it happens, until Ctrl-C or SIGTERM (exit 0)
    #[arg(long)]
    pub(crate) follow: bool,
    /// Print each event as one JSON object per line (JSON lines)
    ///
    /// {"sequence", "at", "environmentId", "tokenId", "kind", "actorType", "actorId"},
    /// and "cause" (the token whose revocation took this one along) or "successor" (a
    /// rotated token's replacement). Standard output then holds nothing else.
    #[arg(long, verbatim_doc_comment)]
    pub(crate) json: bool,
    /// Stop after N events (with --follow too).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
    /// Events fetched per database query.
    #[arg(long, value_name = "N", default_value_t = 1000, hide = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) page_size: u32,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// How long a token must have been revoked or expired, e.g. 90d, 12w (0s: all of them)
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub(crate) older_than: Duration,
    /// Print `{"purged": N, "endedBefore": "…"}`.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// The environment the token belongs to.
    #[arg(long, value_name = "UUID", value_parser = environment_id)]
    pub(crate) env: EnvironmentId,
    /// What the token is for (1 to 100 characters).
    #[arg(long, value_name = "TEXT")]
    pub(crate) note: Note,
    /// A scope to grant; repeat for more (see `apitoken scopes`). None by default.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub(crate) scopes: Vec<Scope>,
    /// Lifetime, e.g. 45s, 90m, 12h, 30d, 2w or 1d12h. Default: never expires.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub(crate) expires_in: Option<Duration>,
    /// Accept the token only from this client address range, e.g. 10.0.0.0/8,
    /// 2001:db8::/32 or one address (192.0.2.7); repeat for more (at most 32). Elsewhere it
    /// is refused (403 ip_not_allowed). Default: any address.
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub(crate) allow_cidrs: Vec<apitoken::Cidr>,
    /// The user recorded as the token's creator (`createdBy.id`).
    #[arg(long, value_name = "UUID", value_parser = user_id)]
    pub(crate) created_by: Option<UserId>,
    /// The creator's alias (default `apitoken-cli` when --created-by is not given).
    #[arg(long, value_name = "TEXT")]
    pub(crate) alias: Option<String>,
    /// The creator's first name.
    #[arg(long, value_name = "TEXT")]
    pub(crate) first_name: Option<String>,
    /// The creator's last name.
    #[arg(long, value_name = "TEXT")]
    pub(crate) last_name: Option<String>,
    /// The creator's e-mail address.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) email: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The environment whose tokens to list.
    #[arg(long, value_name = "UUID", value_parser = environment_id)]
    pub(crate) env: EnvironmentId,
    /// Print `{"tokens": [...]}` (the reference JSON, without raw tokens).
    #[arg(long)]
    pub(crate) json: bool,
    /// Show at most N tokens (the oldest first). Default: all.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
    /// Tokens fetched per database query.
    #[arg(long, value_name = "N", default_value_t = 500, hide = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) page_size: u32,
}

/// The token a command acts on: `--env` and `--id`.
#[derive(Debug, Args)]
pub(crate) struct TokenRef {
    /// The token's environment.
    #[arg(long, value_name = "UUID", value_parser = environment_id)]
    pub(crate) env: EnvironmentId,
    /// The token's id.
    #[arg(long, value_name = "UUID", value_parser = token_id)]
    pub(crate) id: TokenId,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    pub(crate) token: TokenRef,
    /// Print `{"token": {...}}` (the reference JSON, without the raw token).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    pub(crate) token: TokenRef,
    /// Print the revoked token as `{"token": {...}}`.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The token to replace.
    #[command(flatten)]
    pub(crate) token: TokenRef,
    /// How long the old token keeps working, e.g. 10m, 24h, 7d (0s: it stops at once)
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "0s")]
    pub(crate) grace: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// - (the default): read the token from standard input
    ///
    /// An Authorization header value (Bearer dyn_…) is accepted too. A token given here
    /// instead is refused unless --insecure-argv is given.
    #[arg(value_name = "-|TOKEN", verbatim_doc_comment)]
    pub(crate) token: Option<String>,
    /// Accept the token as an argument
    ///
    /// Other local users can read a command's arguments while it runs (ps,
    /// /proc/PID/cmdline), and the shell history keeps them: pipe the token on standard
    /// input instead, e.g. printf '%s' "$TOKEN" | apitoken verify -.
    #[arg(long, verbatim_doc_comment)]
    pub(crate) insecure_argv: bool,
    /// Also require the token to belong to this environment.
    #[arg(long, value_name = "UUID", value_parser = environment_id)]
    pub(crate) env: Option<EnvironmentId>,
    /// Also require this scope; repeat for more.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub(crate) scopes: Vec<Scope>,
    /// Verify as if presented from this client address: a token with allowed ranges is
    /// refused without one (ip not allowed).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) from: Option<std::net::IpAddr>,
    /// Print the principal as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A token format, for `inspect` and `scan`.
#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    /// The prefix, without the underscore (default `dyn`).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) prefix: Option<String>,
    /// The checksum's digit order (default: either)
    #[arg(long, value_name = "ORDER", value_parser = alphabet())]
    pub(crate) alphabet: Option<Alphabet>,
    /// Random characters between prefix and checksum (22 to 64; default 30)
    #[arg(long, value_name = "N")]
    pub(crate) length: Option<usize>,
}

impl FormatArgs {
    pub(crate) fn is_empty(&self) -> bool {
        self.prefix.is_none() && self.alphabet.is_none() && self.length.is_none()
    }
}

/// The library's digit orders by name (`Alphabet: FromStr`), listed in help and errors.
fn alphabet() -> impl TypedValueParser<Value = Alphabet> {
    let names = Alphabet::ALL.map(|a| PossibleValue::new(a.name()).help(digit_order(a)));
    PossibleValuesParser::new(names).try_map(|name| name.parse::<Alphabet>())
}

/// The order of an alphabet's digits, in short.
pub(crate) fn digit_order(a: Alphabet) -> &'static str {
    match a {
        Alphabet::GitHub => "0-9A-Za-z",
        _ => "0-9a-zA-Z",
    }
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The token, or `-` to read it from standard input (the default).
    #[arg(value_name = "TOKEN|-")]
    pub(crate) token: Option<String>,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Files to scan; `-` or none for standard input.
    #[arg(value_name = "FILE|-")]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
    /// Revoke every live token found in the database (with what it created), as leaked,
    /// the file and line kept as where it was found; then print what each one was and a
    /// summary. Exit 1 when a live token was found.
    #[arg(long)]
    pub(crate) revoke: bool,
    /// With --revoke, print the outcome as JSON.
    #[arg(long, requires = "revoke")]
    pub(crate) json: bool,
}

const UUID_EXAMPLE: &str = "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d";

fn uuid_arg<T: std::str::FromStr<Err = uuid::Error>>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|e| format!("expected a UUID such as {UUID_EXAMPLE} ({e})"))
}

fn environment_id(s: &str) -> Result<EnvironmentId, String> {
    uuid_arg(s)
}

fn token_id(s: &str) -> Result<TokenId, String> {
    uuid_arg(s)
}

fn user_id(s: &str) -> Result<UserId, String> {
    uuid_arg(s)
}

/// Parses the command line, or prints help, the version or a one-line usage error and
/// returns the exit code.
pub(crate) fn parse() -> Result<Cli, ExitCode> {
    let matches = Cli::command()
        .try_get_matches()
        .map_err(report_clap_error)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(report_clap_error)?;
    cli.global.storage.note_sources(&matches);
    Ok(cli)
}

fn report_clap_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Help and version go to standard output; a closed pipe is not an error.
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            let names: Vec<String> = Cli::command()
                .get_subcommands()
                .map(|c| c.get_name().to_owned())
                .collect();
            let _ = writeln!(
                std::io::stderr(),
                "error: no command given: use one of {} (see `apitoken --help`)",
                names.join(", ")
            );
            ExitCode::from(2)
        }
        _ => {
            let line = one_line_usage_error(&err.render().to_string(), &subcommand_name());
            let _ = writeln!(std::io::stderr(), "{line}");
            ExitCode::from(2)
        }
    }
}

/// `apitoken` and the subcommand named on the command line, if any: where the help is.
fn subcommand_name() -> String {
    let cli = Cli::command();
    let named = std::env::args_os().skip(1).find_map(|arg| {
        cli.get_subcommands()
            .find(|c| arg.to_str() == Some(c.get_name()))
            .map(|c| c.get_name().to_owned())
    });
    match named {
        Some(name) => format!("apitoken {name}"),
        None => "apitoken".to_owned(),
    }
}

/// Folds clap's multi-line error (message, context, usage, "For more information") into
/// one line that ends by saying where to look.
pub(crate) fn one_line_usage_error(rendered: &str, command: &str) -> String {
    let mut command = command.to_owned();
    let mut message = String::new();
    for line in rendered.lines().map(str::trim) {
        if let Some(usage) = line.strip_prefix("Usage:") {
            let words: Vec<&str> = usage
                .split_whitespace()
                .take_while(|w| !w.starts_with(['[', '-', '<']))
                .collect();
            if !words.is_empty() {
                command = words.join(" ");
            }
            break;
        }
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(line);
    }
    let message =
        crate::failure::redact_tokens(message.strip_prefix("error: ").unwrap_or(&message));
    format!("error: {message} (see `{command} --help`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn clap_errors_fold_into_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  --env <UUID>\n\nUsage: apitoken issue --env <UUID> --note <TEXT>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_usage_error(rendered, "apitoken"),
            "error: the following required arguments were not provided: --env <UUID> (see `apitoken issue --help`)"
        );
        let rendered = "error: unexpected argument '--nte' found\n\n  tip: a similar argument exists: '--note'\n\nUsage: apitoken issue <--env <UUID>|--note <TEXT>>\n";
        assert_eq!(
            one_line_usage_error(rendered, "apitoken"),
            "error: unexpected argument '--nte' found; tip: a similar argument exists: '--note' (see `apitoken issue --help`)"
        );
    }
}
