//! Where a PostgreSQL password may live without other local users reading it.
//!
//! A command line is public on the machine (`ps`, `/proc/PID/cmdline`); a process's
//! environment and a file of mode 0600 are its owner's. The driver (sqlx) reads a password
//! missing from the URL from `PGPASSWORD`, then from the file `PGPASSFILE` names, then from
//! `~/.pgpass`, in libpq's format (`host:port:database:user:password`); on Linux it
//! silently skips a password file its group or others may read or write, as libpq does,
//! so that is said here.

use crate::file_mode;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Whether a PostgreSQL URL carries a password: in its user information
/// (`postgres://user:password@host/…`) or as a `password` parameter.
pub(crate) fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or_default();
    let in_user_info = authority
        .rsplit_once('@')
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .is_some_and(|(_, password)| !password.is_empty());
    in_user_info
        || query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(key, value)| key == "password" && !value.is_empty())
        })
}

/// The warning for `--database-url` given on the command line with a password in it. It
/// names neither the URL nor the password, which are already too public.
pub(crate) const PASSWORD_ON_COMMAND_LINE: &str = "--database-url on the command line holds a password, which other local users can read (ps, /proc) and your shell history keeps: give the URL in DATABASE_URL or in a file of mode 0600 with --database-url-file, or keep the password in PGPASSFILE (~/.pgpass) instead";

/// The URL in the file `path` names (`--database-url-file`): one line, without its
/// trailing newline. The file is checked as the hash key file is.
pub(crate) fn read_file(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Zeroizing<String>, String> {
    const WHAT: &str = "the database URL file";
    let shown = path.display();
    let bytes = file_mode::read_secret(path, WHAT, warnings)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{WHAT} {shown} is not UTF-8 text: it must hold a postgres:// URL"))?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.contains(['\n', '\r']) {
        return Err(format!(
            "{WHAT} {shown} holds more than one line: it must hold only the postgres:// URL"
        ));
    }
    if line.trim().is_empty() {
        return Err(format!(
            "{WHAT} {shown} is empty: write the postgres:// URL into it"
        ));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// For a URL without a password, when `PGPASSWORD` is not set: a warning for each password
/// file the driver would read but skips because its group or others may read or write it,
/// so that the connection goes without its password.
pub(crate) fn skipped_password_files(url: &str) -> Vec<String> {
    if has_password(url) || std::env::var_os("PGPASSWORD").is_some_and(|p| !p.is_empty()) {
        return Vec::new();
    }
    let named = std::env::var_os("PGPASSFILE").map(PathBuf::from);
    let home = std::env::home_dir().map(|home| home.join(".pgpass"));
    named
        .into_iter()
        .chain(home)
        .filter_map(|path| skipped(&path))
        .collect()
}

/// The warning for a password file the driver skips for its mode, on Linux (where sqlx
/// checks it: every bit for group or others, as libpq does).
#[cfg(target_os = "linux")]
fn skipped(path: &Path) -> Option<String> {
    let mode = file_mode::unix_mode(&std::fs::metadata(path).ok()?)?;
    if mode & 0o077 == 0 {
        return None;
    }
    let shown = path.display();
    Some(format!(
        "the password file {shown} is skipped: its group or other users have access to it (mode {mode:04o}), so PostgreSQL's rules, which the driver follows, ignore it; make it private with `chmod 600 {}`",
        file_mode::shell_word(path)
    ))
}

#[cfg(not(target_os = "linux"))]
fn skipped(_path: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_where_the_driver_reads_them() {
        for url in [
            "postgres://u:secret@h/db",
            "postgresql://u:s%40cret@h:5432/db?sslmode=disable",
            "postgres://u:p@ss@h/db",
            "postgres://u@h/db?sslmode=disable&password=secret",
            "postgres:///db?password=x",
        ] {
            assert!(has_password(url), "{url}");
        }
        for url in [
            "postgres://u@h/db",
            "postgres://h:5432/db",
            "postgres://u:@h/db",
            "postgres://u@h/db?options=-c%20search_path%3Dx",
            "postgres://u@h/a:b@c",
            "postgres://u@h/db?password=",
        ] {
            assert!(!has_password(url), "{url}");
        }
    }
}
