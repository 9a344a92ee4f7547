//! `issue`, `list`, `get`, `revoke`, `rotate` and `purge`.

use super::failure;
use crate::args::{GetArgs, Global, IssueArgs, ListArgs, PurgeArgs, RevokeArgs, RotateArgs};
use crate::failure::{Failure, emit, write_stdout};
use crate::output;
use crate::storage::{self, Access};
use apitoken::{AllowedCidrs, Creator, IssueRequest, IssuedToken, Scopes, Token, TokenId, UserId};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;

/// The creator recorded when `--created-by` is not given: a fixed id (UUID v5 of
/// `urn:apitoken:cli-operator` in the URL namespace), so that tokens issued from the
/// command line are recognisable and filterable as such.
const CLI_OPERATOR: Uuid = Uuid::from_u128(0xbe9ff319_9cc8_507a_b470_228869fbc201);

/// The alias recorded with [`CLI_OPERATOR`].
const CLI_OPERATOR_ALIAS: &str = "apitoken-cli";

pub(crate) async fn issue(global: &Global, args: IssueArgs) -> Result<ExitCode, Failure> {
    // Everything that can be checked without the database is, so that a usage error
    // creates no file.
    let catalog = storage::catalog(global);
    if let Some(unknown) = args.scopes.iter().find(|s| !catalog.contains(s)) {
        return Err(Failure::usage(format!(
            "unknown scope `{unknown}`: run `apitoken scopes` for the accepted scopes, or add yours with --extra-scopes (or APITOKEN_EXTRA_SCOPES)"
        )));
    }
    if args.expires_in.is_some_and(|d| d.is_zero()) {
        return Err(Failure::usage(
            "--expires-in must be at least 1s; leave it out for a token that never expires",
        ));
    }
    let policy = global.lifetime.policy();
    if args.expires_in.is_none() && policy.requires_expiry() {
        return Err(Failure::usage(match policy.max_lifetime_limit() {
            Some(_) => {
                "--max-lifetime requires an expiry: give --expires-in, at most the maximum lifetime"
            }
            None => "--require-expiry requires an expiry: give --expires-in, e.g. --expires-in 90d",
        }));
    }
    if let (Some(asked), Some(max)) = (args.expires_in, policy.max_lifetime_limit())
        && asked > max
    {
        return Err(Failure::usage(format!(
            "--expires-in is longer than --max-lifetime ({}s > {}s): give --expires-in of at most the maximum lifetime",
            asked.as_secs(),
            max.as_secs()
        )));
    }
    let allowed = if args.allow_cidrs.is_empty() {
        None
    } else {
        Some(
            AllowedCidrs::new(args.allow_cidrs.iter().copied())
                .map_err(|e| Failure::usage(format!("--allow-cidr: {e}")))?,
        )
    };
    let creator = creator(&args)?;
    require_stdout()?;
    let mut request =
        IssueRequest::new(args.note).with_scopes(args.scopes.into_iter().collect::<Scopes>());
    if let Some(allowed) = allowed {
        request = request.allowed_from(allowed);
    }
    let issued = storage::with_issuer(global, Access::Create, async move |issuer| {
        // Measured from when the database is ready, as close as possible to the issue.
        if let Some(lifetime) = args.expires_in {
            request = request.expires_at(expiry(lifetime, policy.max_lifetime_limit())?);
        }
        issuer
            .issue(args.env, creator, request)
            .await
            .map_err(failure)
    })
    .await?;
    print_issued(&issued)
}

/// Now plus `lifetime`, rounded up to a whole second (never shorter than asked), but
/// never past now plus `max` (the rounding must not make a lifetime of exactly the
/// maximum too long).
fn expiry(lifetime: Duration, max: Option<Duration>) -> Result<DateTime<Utc>, Failure> {
    let now = Utc::now();
    let latest = max
        .and_then(|max| TimeDelta::from_std(max).ok())
        .and_then(|max| now.checked_add_signed(max))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let second = now.trunc_subsecs(0);
    let start = if second < now {
        second + TimeDelta::seconds(1)
    } else {
        second
    };
    TimeDelta::from_std(lifetime)
        .ok()
        .and_then(|d| start.checked_add_signed(d))
        .map(|at| at.min(latest))
        .ok_or_else(|| Failure::usage("--expires-in is too long: at most 36525d"))
}

/// Who acts through the command line: the operator, a person, who acts on every token
/// of an environment (see `apitoken::Caller`).
pub(crate) fn operator() -> Creator {
    Creator {
        alias: Some(CLI_OPERATOR_ALIAS.to_owned()),
        ..Creator::new(UserId::from_uuid(CLI_OPERATOR))
    }
}

fn creator(args: &IssueArgs) -> Result<Creator, Failure> {
    let (id, default_alias) = match args.created_by {
        Some(id) => (id, None),
        None => {
            let operator = operator();
            (operator.id, operator.alias)
        }
    };
    Ok(Creator {
        id,
        alias: name("--alias", args.alias.as_deref())?.or(default_alias),
        first_name: name("--first-name", args.first_name.as_deref())?,
        last_name: name("--last-name", args.last_name.as_deref())?,
        email: name("--email", args.email.as_deref())?,
    })
}

/// A creator's name field: trimmed, empty means absent, one line of at most 200
/// characters.
fn name(option: &str, value: Option<&str>) -> Result<Option<String>, Failure> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().any(char::is_control) {
        return Err(Failure::usage(format!(
            "{option} must be one line without control characters"
        )));
    }
    if value.chars().count() > 200 {
        return Err(Failure::usage(format!(
            "{option} is too long: at most 200 characters"
        )));
    }
    Ok(Some(value.to_owned()))
}

/// Refuses to make a token that nobody would see: with standard output closed
/// (`>&-`, which Rust's runtime reopens as `/dev/null`) or sent to `/dev/null`, the token
/// would be issued, printed nowhere, and the command would still succeed.
fn require_stdout() -> Result<(), Failure> {
    if !stdout_discards() {
        return Ok(());
    }
    Err(Failure::usage(
        "standard output is closed or /dev/null, so the new token would be lost: nothing was issued; send standard output to a terminal, a pipe or a file",
    ))
}

#[cfg(unix)]
fn stdout_discards() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() else {
        return true;
    };
    let (Ok(out), Ok(null)) = (
        std::fs::File::from(fd).metadata(),
        std::fs::metadata("/dev/null"),
    ) else {
        return false;
    };
    out.file_type().is_char_device() && out.rdev() == null.rdev()
}

#[cfg(not(unix))]
fn stdout_discards() -> bool {
    false
}

/// Prints the reference JSON with the raw token. If it cannot be written, the token
/// exists but nobody has it: say so, and how to revoke it.
fn print_issued(issued: &IssuedToken) -> Result<ExitCode, Failure> {
    let token = &issued.token;
    let lost = |why: String| {
        Failure::usage(format!(
            "token {} was issued but could not be printed ({why}); nobody holds it: revoke it with `apitoken revoke --env {} --id {}` and issue another",
            token.id, token.environment, token.id
        ))
    };
    let json = zeroize::Zeroizing::new(
        serde_json::to_string_pretty(issued).map_err(|e| lost(e.to_string()))?,
    );
    write_stdout(&json).map_err(|e| lost(e.to_string()))?;
    if io::stdout().is_terminal() {
        let _ = writeln!(
            io::stderr(),
            "note: store token.rawToken now; it is not shown again (only its hash is kept)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(global: &Global, args: ListArgs) -> Result<ExitCode, Failure> {
    let limit = args
        .limit
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let (tokens, prefix) = storage::with_issuer(global, Access::Read, async |issuer| {
        let now = issuer.now();
        let tokens = issuer
            .list_all(args.env, limit, args.page_size)
            .await
            .map_err(failure)?
            .into_iter()
            .map(|t| issuer.with_idle_expiry(t, now))
            .collect::<Vec<_>>();
        Ok((tokens, issuer.format().prefix().to_owned()))
    })
    .await?;
    if args.json {
        emit(&pretty(&TokensOut { tokens: &tokens })?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if tokens.is_empty() {
        emit(&format!("no tokens in environment {}", args.env))?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let prefix = prefix.as_str();
    // Which token created which: by its name when it is listed too, else by its id.
    let names: HashMap<TokenId, String> = tokens
        .iter()
        .map(|t| (t.id, output::token_name(prefix, t)))
        .collect();
    let creator_token = |t: &Token| match t.created_by_token {
        Some(id) => names.get(&id).cloned().unwrap_or_else(|| id.to_string()),
        None => "-".to_owned(),
    };
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                output::token_name(prefix, t),
                output::truncate(t.note.as_str(), 32),
                output::truncate(&output::scopes(&t.scopes), 48),
                output::minute(Some(t.created_at), "-"),
                output::minute(t.expires_at, "never"),
                output::minute(t.last_used_at, "never"),
                t.last_used_ip
                    .map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
                creator_token(t),
                output::status(t, now).to_owned(),
            ]
        })
        .collect();
    let mut text = output::table(
        &[
            "ID",
            "TOKEN",
            "NOTE",
            "SCOPES",
            "CREATED (UTC)",
            "EXPIRES",
            "LAST USED",
            "LAST USED FROM",
            "CREATED BY TOKEN",
            "STATUS",
        ],
        &rows,
    );
    let count = |status: &str| {
        tokens
            .iter()
            .filter(|t| output::status(t, now) == status)
            .count()
    };
    text.push_str(&format!(
        "{} token{}: {} active, {} revoked, {} expired",
        tokens.len(),
        if tokens.len() == 1 { "" } else { "s" },
        count("active"),
        count("revoked"),
        count("expired"),
    ));
    if args.limit.is_some_and(|l| tokens.len() as u64 >= l) {
        text.push_str(" (--limit reached; there may be more)");
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn get(global: &Global, args: GetArgs) -> Result<ExitCode, Failure> {
    let (token, prefix) = storage::with_issuer(global, Access::Read, async |issuer| {
        let token = issuer
            .get(args.token.env, operator(), args.token.id)
            .await
            .map_err(failure)?;
        let token = issuer.with_idle_expiry(token, issuer.now());
        Ok((token, issuer.format().prefix().to_owned()))
    })
    .await?;
    if args.json {
        emit(&pretty(&TokenOut { token: &token })?)?;
    } else {
        emit(&describe(&prefix, &token))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(prefix: &str, t: &Token) -> String {
    let optional =
        |at: Option<DateTime<Utc>>, none: &str| at.map_or_else(|| none.to_owned(), output::rfc3339);
    output::fields(&[
        ("id", t.id.to_string()),
        ("token", output::token_name(prefix, t)),
        ("status", output::status(t, Utc::now()).to_owned()),
        ("note", t.note.to_string()),
        ("environment", t.environment.to_string()),
        ("scopes", output::scopes(&t.scopes)),
        ("created", output::rfc3339(t.created_at)),
        ("created by", output::creator(&t.created_by)),
        (
            "created by token",
            t.created_by_token
                .map_or_else(|| "none (a user)".to_owned(), |id| id.to_string()),
        ),
        ("expires", optional(t.expires_at, "never")),
        (
            "allowed from",
            t.allowed_cidrs
                .as_ref()
                .map_or_else(|| "any address".to_owned(), |r| r.to_string()),
        ),
        ("last used", optional(t.last_used_at, "never")),
        (
            "last used from",
            t.last_used_ip
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        ),
        ("revoked", optional(t.revoked_at, "no")),
    ])
}

pub(crate) async fn revoke(global: &Global, args: RevokeArgs) -> Result<ExitCode, Failure> {
    let (revoked, prefix) = storage::with_issuer(global, Access::Write, async |issuer| {
        let revoked = issuer
            .revoke(args.token.env, operator(), args.token.id)
            .await
            .map_err(failure)?;
        Ok((revoked, issuer.format().prefix().to_owned()))
    })
    .await?;
    let token = &revoked.token;
    if args.json {
        emit(&pretty(&RevokedOut {
            token,
            also_revoked: &revoked.cascade,
        })?)?;
    } else {
        let at = token
            .revoked_at
            .map_or_else(String::new, |at| format!(" at {}", output::rfc3339(at)));
        let mut text = format!(
            "revoked token {} ({}, note {:?}){at}",
            token.id,
            output::token_name(&prefix, token),
            token.note.as_str(),
        );
        if !revoked.cascade.is_empty() {
            let n = revoked.cascade.len();
            text.push_str(&format!(
                "\nalso revoked {n} token{} it created or replaced (tokens it created, directly or not, and its predecessors still in their grace period)",
                if n == 1 { "" } else { "s" }
            ));
        }
        emit(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn rotate(global: &Global, args: RotateArgs) -> Result<ExitCode, Failure> {
    require_stdout()?;
    let issued = storage::with_issuer(global, Access::Write, async |issuer| {
        issuer
            .rotate(args.token.env, operator(), args.token.id, args.grace)
            .await
            .map_err(failure)
    })
    .await?;
    print_issued(&issued)
}

pub(crate) async fn purge(global: &Global, args: PurgeArgs) -> Result<ExitCode, Failure> {
    let purged = storage::with_issuer(global, Access::Write, async |issuer| {
        issuer.purge(args.older_than).await.map_err(failure)
    })
    .await?;
    let ended_before = output::rfc3339(purged.ended_before);
    if args.json {
        emit(&pretty(&PurgedOut {
            purged: purged.tokens,
            ended_before: &ended_before,
        })?)?;
    } else {
        emit(&format!(
            "purged {} token{} revoked or expired before {ended_before}",
            purged.tokens,
            if purged.tokens == 1 { "" } else { "s" },
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `{"token": {...}, "alsoRevoked": [...]}`: the revoked token and what went with it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RevokedOut<'a> {
    token: &'a Token,
    also_revoked: &'a [TokenId],
}

/// `{"purged": N, "endedBefore": "…"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PurgedOut<'a> {
    purged: u64,
    ended_before: &'a str,
}

/// `{"tokens": [...]}`, the reference's list answer.
#[derive(Serialize)]
struct TokensOut<'a> {
    tokens: &'a [Token],
}

/// `{"token": {...}}`, the reference's introspection answer.
#[derive(Serialize)]
struct TokenOut<'a> {
    token: &'a Token,
}

fn pretty(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))
}
