//! `inspect`: check a token's format alone, without any database.

use super::format_from;
use crate::args::{InspectArgs, digit_order};
use crate::failure::{Failure, emit};
use crate::input;
use crate::output;
use apitoken::{Alphabet, Checksum, FormatError, TokenFormat};
use serde::Serialize;
use std::process::ExitCode;

pub(crate) fn inspect(args: &InspectArgs) -> Result<ExitCode, Failure> {
    let token = input::token(args.token.as_deref())?;
    let result = check(&token, args)?;
    drop(token);
    let text = match (&result, args.json) {
        (Ok((format, checksum)), true) => json(&Valid {
            valid: true,
            prefix: format.prefix(),
            checksum: *checksum,
            alphabet: format.alphabet().name(),
            random_length: format.random_len(),
            length: format.token_len(),
        })?,
        (Err(reason), true) => json(&Invalid {
            valid: false,
            reason: reason.to_string(),
        })?,
        (Ok((format, checksum)), false) => output::fields(&[
            ("valid", "yes".to_owned()),
            ("prefix", format.prefix().to_owned()),
            ("checksum", checksum.to_string()),
            ("alphabet", alphabet(format.alphabet())),
            (
                "random",
                format!(
                    "{} characters ({:.0} bits)",
                    format.random_len(),
                    format.entropy_bits().floor()
                ),
            ),
            ("length", format!("{} characters", format.token_len())),
        ]),
        (Err(reason), false) => {
            output::fields(&[("valid", "no".to_owned()), ("reason", reason.to_string())])
        }
    };
    emit(&text)?;
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The format the token is valid in and its checksum, or why it is not valid. Without
/// format options the format is inferred; with them, an unspecified digit order may be
/// either (Dynamic's is tried first). `Err` of the outer result is a usage error.
fn check(
    token: &str,
    args: &InspectArgs,
) -> Result<Result<(TokenFormat, Checksum), FormatError>, Failure> {
    if args.format.is_empty() {
        return Ok(TokenFormat::infer(token)
            .and_then(|format| format.parse(token).map(|p| (format, p.checksum()))));
    }
    let base = format_from(&args.format)?;
    let candidates: Vec<TokenFormat> = match args.format.alphabet {
        Some(_) => vec![base],
        None => Alphabet::ALL
            .into_iter()
            .map(|a| base.with_alphabet(a))
            .collect(),
    };
    let mut first_error = None;
    for format in candidates {
        match format.parse(token) {
            Ok(parsed) => return Ok(Ok((format, parsed.checksum()))),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Ok(Err(first_error.unwrap_or(FormatError::Unrecognized)))
}

fn alphabet(a: Alphabet) -> String {
    format!("{} ({})", a.name(), digit_order(a))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Valid<'a> {
    valid: bool,
    prefix: &'a str,
    checksum: Checksum,
    alphabet: &'static str,
    random_length: usize,
    length: usize,
}

#[derive(Serialize)]
struct Invalid {
    valid: bool,
    reason: String,
}

fn json(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))
}
