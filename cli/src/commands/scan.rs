//! `scan`: find well-formed tokens in files or standard input.

use super::format_from;
use crate::args::{Global, ScanArgs};
use crate::failure::{Failure, emit};
use crate::storage::{self, Access};
use apitoken::scan::Finding;
use apitoken::{
    Alphabet, Checksum, EnvironmentId, LeakDetails, LeakOutcome, LeakReporter, TokenFormat, TokenId,
};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// The name printed for standard input.
const STDIN_NAME: &str = "<stdin>";

pub(crate) fn scan(args: ScanArgs) -> Result<ExitCode, Failure> {
    let formats = formats(&args)?;
    let mut found = false;
    let unreadable = read_each(&args, |name, text| {
        let located = locate(name, text, &formats);
        if !located.is_empty() {
            found = true;
            let mut out = String::new();
            for token in &located {
                out.push_str(&format!("{}: {}\n", token.location(), token.checksum));
            }
            emit(&out)?;
        }
        Ok(())
    })?;
    Ok(ExitCode::from(match (unreadable, found) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 0,
    }))
}

/// `scan --revoke`: revokes every live token found, as leaked, with the file and line as
/// where it was found; prints each token's outcome (by checksum, never the token) and a
/// summary.
pub(crate) async fn scan_and_revoke(global: &Global, args: ScanArgs) -> Result<ExitCode, Failure> {
    let formats = formats(&args)?;
    // Read first: a token found is revoked whatever else happens, but the database is
    // opened only when there is something to revoke.
    let mut located = Vec::new();
    let unreadable = read_each(&args, |name, text| {
        for token in locate(name, text, &formats) {
            let bytes = text.get(token.finding.range()).unwrap_or_default().to_vec();
            located.push((Place::from(&token), bytes));
        }
        Ok(())
    })?;
    let mut outcomes = Vec::with_capacity(located.len());
    if !located.is_empty() {
        storage::with_issuer(global, Access::Write, async |issuer| {
            for (place, bytes) in &located {
                // A finding is ASCII (the format's prefix and alphabet).
                let reported = String::from_utf8_lossy(bytes);
                let leak = LeakDetails::new(LeakReporter::Operator)
                    .with_source("apitoken scan --revoke")
                    .with_url(format!("{}:{}", place.file, place.line));
                let outcome = issuer
                    .revoke_leaked(&reported, &leak)
                    .await
                    .map_err(|e| Failure::usage(format!("{e}; tokens listed above were handled")))
                    .inspect_err(|_| {
                        let _ = print_outcomes(&outcomes, args.json);
                    })?;
                outcomes.push(Outcome::new(place.clone(), &outcome));
            }
            Ok(())
        })
        .await?;
    }
    print_outcomes(&outcomes, args.json)?;
    let live = outcomes.iter().any(|o| o.outcome == "revoked");
    Ok(ExitCode::from(match (unreadable, live) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 0,
    }))
}

/// Where a token was found, and its checksum.
#[derive(Clone, Serialize)]
struct Place {
    file: String,
    line: usize,
    column: usize,
    checksum: String,
}

impl From<&Located<'_>> for Place {
    fn from(token: &Located<'_>) -> Place {
        Place {
            file: token.name.to_owned(),
            line: token.line,
            column: token.column,
            checksum: token.checksum.to_string(),
        }
    }
}

/// What `scan --revoke` found at one place.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    #[serde(flatten)]
    place: Place,
    /// `revoked`, `already_revoked`, `expired`, `unknown` or `not_ours`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<TokenId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment_id: Option<EnvironmentId>,
    /// How many other tokens its revocation took with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    also_revoked: Option<usize>,
}

impl Outcome {
    fn new(place: Place, outcome: &LeakOutcome) -> Outcome {
        Outcome {
            place,
            outcome: outcome.name(),
            token_id: outcome.token().map(|t| t.id),
            environment_id: outcome.token().map(|t| t.environment),
            also_revoked: match outcome {
                LeakOutcome::Revoked(revoked) => Some(revoked.cascade.len()),
                _ => None,
            },
        }
    }
}

/// One line per token found, then the summary; or the JSON form
/// `{"found", "revoked", "alreadyRevoked", "expired", "unknown", "notOurs", "tokens": [...]}`.
fn print_outcomes(outcomes: &[Outcome], json: bool) -> Result<(), Failure> {
    let count = |name: &str| outcomes.iter().filter(|o| o.outcome == name).count();
    let (revoked, already, expired, unknown, not_ours) = (
        count("revoked"),
        count("already_revoked"),
        count("expired"),
        count("unknown"),
        count("not_ours"),
    );
    if json {
        let value = serde_json::json!({
            "found": outcomes.len(),
            "revoked": revoked,
            "alreadyRevoked": already,
            "expired": expired,
            "unknown": unknown,
            "notOurs": not_ours,
            "tokens": outcomes,
        });
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))?;
        return emit(&text);
    }
    let mut out = String::new();
    for o in outcomes {
        let what = match (o.outcome, o.token_id, o.also_revoked) {
            ("revoked", Some(id), Some(0) | None) => format!("revoked now (token {id})"),
            ("revoked", Some(id), Some(n)) => format!(
                "revoked now (token {id}), with {n} token{} it created or replaced",
                if n == 1 { "" } else { "s" }
            ),
            ("already_revoked", Some(id), _) => format!("already revoked (token {id})"),
            ("expired", Some(id), _) => format!("expired (token {id})"),
            ("unknown", ..) => "unknown: well formed, but not in this database".to_owned(),
            _ => "not ours: not in this database's token format".to_owned(),
        };
        let Place {
            file,
            line,
            column,
            checksum,
        } = &o.place;
        out.push_str(&format!("{file}:{line}:{column}: {checksum} {what}\n"));
    }
    out.push_str(&format!(
        "found {}: {revoked} revoked now, {already} already revoked, {expired} expired, {unknown} unknown, {not_ours} not ours",
        outcomes.len()
    ));
    emit(&out)
}

/// The formats to look for: Dynamic's unless the options say otherwise; without
/// --alphabet, a checksum in either digit order counts.
fn formats(args: &ScanArgs) -> Result<Vec<TokenFormat>, Failure> {
    let format = format_from(&args.format)?;
    Ok(match args.format.alphabet {
        Some(_) => vec![format],
        None => Alphabet::ALL
            .into_iter()
            .map(|a| format.with_alphabet(a))
            .collect(),
    })
}

/// Reads each file named (standard input for `-` or none) and hands it to `each`;
/// whether a file could not be read (one `error:` line for each; the others are still
/// read).
fn read_each(
    args: &ScanArgs,
    mut each: impl FnMut(&str, &[u8]) -> Result<(), Failure>,
) -> Result<bool, Failure> {
    let stdin_only = [Path::new("-").to_path_buf()];
    let files = if args.files.is_empty() {
        &stdin_only[..]
    } else {
        &args.files[..]
    };
    let mut unreadable = false;
    for path in files {
        let (name, read) = if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            let read = io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes);
            (STDIN_NAME.to_owned(), read)
        } else {
            (path.display().to_string(), std::fs::read(path))
        };
        match read {
            Ok(text) => each(&name, &text)?,
            Err(e) => {
                unreadable = true;
                let _ = writeln!(
                    io::stderr(),
                    "error: cannot read {name}: {e}; check the path (scan takes files, not directories)"
                );
            }
        }
    }
    Ok(unreadable)
}

/// A token found, and where: line and column counted from 1, the column in bytes.
#[derive(Clone, Copy)]
struct Located<'a> {
    name: &'a str,
    line: usize,
    column: usize,
    checksum: Checksum,
    finding: Finding,
}

impl Located<'_> {
    /// `NAME:LINE:COLUMN`.
    fn location(&self) -> String {
        format!("{}:{}:{}", self.name, self.line, self.column)
    }
}

/// The tokens of any of `formats` in `text`, in order, each once.
fn locate<'a>(name: &'a str, text: &[u8], formats: &[TokenFormat]) -> Vec<Located<'a>> {
    let mut found: Vec<Finding> = formats
        .iter()
        .flat_map(|format| apitoken::scan::scan(format, text))
        .collect();
    found.sort_by_key(|f| f.offset);
    found.dedup_by_key(|f| f.offset);
    let mut located = Vec::with_capacity(found.len());
    let mut line = 1usize;
    let mut line_start = 0usize;
    let mut counted = 0usize;
    for finding in found {
        let upto = finding.offset.min(text.len());
        for (i, &b) in text
            .get(counted..upto)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if b == b'\n' {
                line += 1;
                line_start = counted + i + 1;
            }
        }
        counted = upto;
        located.push(Located {
            name,
            line,
            column: upto - line_start + 1,
            checksum: finding.checksum,
            finding,
        });
    }
    located
}

/// `NAME:LINE:COLUMN: CHECKSUM` for each token, line and column counted from 1, the
/// column in bytes.
#[cfg(test)]
fn findings(name: &str, text: &[u8], formats: &[TokenFormat]) -> String {
    locate(name, text, formats)
        .iter()
        .map(|t| format!("{}: {}\n", t.location(), t.checksum))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{TokenFormat, findings};

    #[test]
    fn lines_and_columns_count_from_one_in_bytes() {
        let token = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";
        let text = format!("{token}\nno token here\r\n  é {token} and {token}\n");
        let formats = [TokenFormat::dynamic(), TokenFormat::dynamic()];
        assert_eq!(
            findings("f", text.as_bytes(), &formats),
            "f:1:1: 4n3LFC\nf:3:6: 4n3LFC\nf:3:51: 4n3LFC\n"
        );
        assert_eq!(findings("f", b"clean\n", &formats), "");
    }
}
