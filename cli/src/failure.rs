//! How a command fails: an exit code and one line for standard error.

use apitoken::{MAX_PREFIX_LEN, MIN_RANDOM_LEN};
use std::io::{self, Write};
use std::process::ExitCode;

/// A failed command: exit 1 for a rejected token, 2 for everything else.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Exit 2: a usage, input or storage error. The message should say what to do.
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Exit 1: the token was checked and rejected.
    pub(crate) fn rejected(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// Writes `error: …` as one line on standard error and returns the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let line = redact_tokens(&one_line(&self.message));
        let _ = writeln!(io::stderr(), "error: {line}");
        ExitCode::from(self.code)
    }
}

/// Writes `warning: …` as one line on standard error: something to fix that did not stop
/// the command.
pub(crate) fn warn(message: &str) {
    let line = redact_tokens(&one_line(message));
    let _ = writeln!(io::stderr(), "warning: {line}");
}

/// Line breaks and other control characters (from a driver's message, say) become
/// spaces, so the error stays one line and cannot drive the terminal.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut space = false;
    for c in message.trim().chars() {
        if c.is_control() || c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Replaces anything shaped like a token (`prefix_` and 22 or more letters and digits,
/// valid checksum or not: a mistyped token is still a secret) with its prefix and, when
/// the checksum is valid, its checksum: `dyn_…4n3LFC`. Error messages may quote
/// arguments (clap does), and a token must never reach a terminal log that way.
pub(crate) fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        out.push_str(&redact_word(word));
        rest = after;
    }
    out.push_str(rest);
    out
}

fn redact_word(word: &str) -> String {
    let Some((prefix, body)) = word.split_once('_') else {
        return word.to_owned();
    };
    let prefix_ok =
        prefix.len() <= MAX_PREFIX_LEN && prefix.starts_with(|c: char| c.is_ascii_alphabetic());
    // The shortest random part, without a checksum: a mistyped or cut token still counts.
    let long_enough = body.len() >= MIN_RANDOM_LEN;
    if !prefix_ok || !long_enough || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return word.to_owned();
    }
    match apitoken::TokenFormat::infer(word).and_then(|f| f.parse(word).map(|p| p.checksum())) {
        Ok(checksum) => format!("{prefix}_…{checksum}"),
        Err(_) => format!("{prefix}_…"),
    }
}

/// Writes `text` to standard output. A reader that went away (`apitoken list | head`)
/// ends the output quietly; other write errors fail the command.
pub(crate) fn emit(text: &str) -> Result<(), Failure> {
    match write_stdout(text) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::usage(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

/// Writes `text` and a newline to standard output, flushed.
pub(crate) fn write_stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::{one_line, redact_tokens};

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            redact_tokens("unexpected argument 'dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC' found"),
            "unexpected argument 'dyn_…4n3LFC' found"
        );
        assert_eq!(
            redact_tokens("x=dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFc, é ghp_short my_var"),
            "x=dyn_…, é ghp_short my_var"
        );
        assert_eq!(
            redact_tokens("--env <UUID>: token_id"),
            "--env <UUID>: token_id"
        );
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line(" a\nb\r\n  c\t\x1b[31md "), "a b c [31md");
    }
}
