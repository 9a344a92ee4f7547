//! `keys status` and `keys retire`.

use super::failure;
use crate::args::{Global, KeysRetireArgs, KeysStatusArgs};
use crate::failure::{Failure, emit};
use crate::output;
use crate::storage::{self, Access};
use apitoken::{Caller, KeyUsage, TokenId};
use serde::Serialize;
use std::process::ExitCode;

/// One key as `keys status --json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyOut {
    fingerprint: String,
    current: bool,
    live: u64,
    never_expiring: u64,
    latest_expiry: Option<String>,
    retirable_on: Option<String>,
}

pub(crate) async fn status(global: &Global, args: KeysStatusArgs) -> Result<ExitCode, Failure> {
    let (usage, current, now) = storage::with_issuer(global, Access::Read, async |issuer| {
        let usage = issuer.hash_key_usage().await.map_err(failure)?;
        Ok((usage, issuer.hasher().fingerprint(), issuer.now()))
    })
    .await?;
    let keys: Vec<KeyOut> = usage
        .iter()
        .map(|usage: &KeyUsage| {
            let is_current = usage.key == current;
            KeyOut {
                fingerprint: usage.key.to_string(),
                current: is_current,
                live: usage.live,
                never_expiring: usage.never_expiring,
                latest_expiry: usage.latest_expiry.map(output::rfc3339),
                // The current key hashes every new token: it is never retired as it is.
                retirable_on: (!is_current)
                    .then(|| usage.retirable_on(now))
                    .flatten()
                    .map(|day| day.format("%Y-%m-%d").to_string()),
            }
        })
        .collect();
    if args.json {
        let json = serde_json::to_string_pretty(&keys)
            .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))?;
        emit(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                key.fingerprint.clone(),
                if key.current { "current" } else { "retired" }.to_owned(),
                key.live.to_string(),
                key.never_expiring.to_string(),
                key.latest_expiry.clone().unwrap_or_else(|| "-".to_owned()),
                match (&key.retirable_on, key.current) {
                    (_, true) => "-".to_owned(),
                    (Some(day), false) => day.clone(),
                    (None, false) => "never (tokens without expiry)".to_owned(),
                },
            ]
        })
        .collect();
    emit(&output::table(
        &[
            "FINGERPRINT",
            "ROLE",
            "LIVE",
            "NEVER EXPIRING",
            "LATEST EXPIRY",
            "RETIRABLE ON",
        ],
        &rows,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `{"retired": "key:…", "revoked": [ids]}`.
#[derive(Serialize)]
struct RetiredOut<'a> {
    retired: String,
    revoked: &'a [TokenId],
}

pub(crate) async fn retire(global: &Global, args: KeysRetireArgs) -> Result<ExitCode, Failure> {
    let key = args.fingerprint;
    let retired = storage::with_issuer(global, Access::Retiring(key), async |issuer| {
        let by = args
            .revoke_remaining
            .then(|| Caller::from(super::tokens::operator()));
        issuer.retire_hash_key(key, by).await.map_err(failure)
    })
    .await?;
    if args.json {
        let json = serde_json::to_string_pretty(&RetiredOut {
            retired: retired.key.to_string(),
            revoked: &retired.revoked,
        })
        .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))?;
        emit(&json)?;
    } else {
        let n = retired.revoked.len();
        emit(&format!(
            "retired hash key {key}{}: drop it from --hash-key-file (or APITOKEN_RETIRED_HASH_KEYS)",
            if n == 0 {
                String::new()
            } else {
                format!(
                    ", revoking {n} token{} it still hashed (with what they created)",
                    if n == 1 { "" } else { "s" }
                )
            }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
