//! `scan`: find well-formed tokens in files or standard input.

use super::format_from;
use crate::args::ScanArgs;
use crate::failure::{Failure, emit};
use apitoken::scan::Finding;
use apitoken::{Alphabet, TokenFormat};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// The name printed for standard input.
const STDIN_NAME: &str = "<stdin>";

pub(crate) fn scan(args: ScanArgs) -> Result<ExitCode, Failure> {
    // Dynamic's format unless the options say otherwise; without --alphabet, a checksum
    // in either digit order counts.
    let format = format_from(&args.format)?;
    let formats: Vec<TokenFormat> = match args.format.alphabet {
        Some(_) => vec![format],
        None => Alphabet::ALL
            .into_iter()
            .map(|a| format.with_alphabet(a))
            .collect(),
    };
    let stdin_only = [Path::new("-").to_path_buf()];
    let files = if args.files.is_empty() {
        &stdin_only[..]
    } else {
        &args.files[..]
    };
    let mut found = false;
    let mut unreadable = false;
    for path in files {
        let (name, read) = if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            let read = io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes);
            (STDIN_NAME.to_owned(), read)
        } else {
            (path.display().to_string(), std::fs::read(path))
        };
        let text = match read {
            Ok(text) => text,
            Err(e) => {
                // One line per unreadable file; the others are still scanned.
                unreadable = true;
                let _ = writeln!(
                    io::stderr(),
                    "error: cannot read {name}: {e}; check the path (scan takes files, not directories)"
                );
                continue;
            }
        };
        let report = findings(&name, &text, &formats);
        if !report.is_empty() {
            found = true;
            emit(&report)?;
        }
    }
    Ok(ExitCode::from(match (unreadable, found) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 0,
    }))
}

/// `NAME:LINE:COLUMN: CHECKSUM` for each token, line and column counted from 1, the
/// column in bytes.
fn findings(name: &str, text: &[u8], formats: &[TokenFormat]) -> String {
    let mut found: Vec<Finding> = formats
        .iter()
        .flat_map(|format| apitoken::scan::scan(format, text))
        .collect();
    found.sort_by_key(|f| f.offset);
    found.dedup_by_key(|f| f.offset);
    let mut out = String::new();
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
        let column = upto - line_start + 1;
        out.push_str(&format!("{name}:{line}:{column}: {}\n", finding.checksum));
    }
    out
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
