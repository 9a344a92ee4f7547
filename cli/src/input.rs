//! Tokens given on the command line or on standard input.

use crate::failure::Failure;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use zeroize::Zeroizing;

/// More than any token or `Authorization` header; anything longer is not a token.
const MAX_INPUT: u64 = 64 * 1024;

/// The token from an argument, or from standard input when the argument is `-` or
/// absent. Surrounding whitespace (the newline `echo` adds) is removed. The copy is
/// wiped from memory when dropped.
pub(crate) fn token(arg: Option<&str>) -> Result<Zeroizing<String>, Failure> {
    let text = match arg {
        Some(arg) if arg != "-" => Zeroizing::new(arg.to_owned()),
        _ => read_stdin()?,
    };
    Ok(Zeroizing::new(text.trim().to_owned()))
}

fn read_stdin() -> Result<Zeroizing<String>, Failure> {
    let stdin = io::stdin();
    let mut bytes = Zeroizing::new(Vec::new());
    let read = if stdin.is_terminal() {
        // A person at a terminal pastes one line; do not wait for end of input.
        let _ = write!(io::stderr(), "token: ");
        let _ = io::stderr().flush();
        stdin
            .lock()
            .take(MAX_INPUT + 1)
            .read_until(b'\n', &mut bytes)
    } else {
        stdin.lock().take(MAX_INPUT + 1).read_to_end(&mut bytes)
    };
    read.map_err(|e| Failure::usage(format!("cannot read the token from standard input: {e}")))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(Failure::usage(
            "standard input holds more than 64 KiB, which is not a token: pipe the token alone",
        ));
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(Failure::usage(
            "standard input is not UTF-8 text, so it is not a token: pipe the token alone",
        )),
    }
}
