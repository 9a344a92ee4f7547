//! Creating a new database file readable and writable by its owner only.
//!
//! SQLite creates a missing database file with mode 0644 (less the umask), so any local
//! user could read the token hashes, the creators' names and e-mail addresses and the
//! notes. Created here first with mode 0600, the file is then only opened by SQLite,
//! which gives the `-wal` and `-shm` files it makes the database file's permissions: all
//! three stay private whatever the umask.

use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// Creates the file `options` would make SQLite create, empty and with mode 0600, when it
/// does not exist yet. An existing file is never truncated nor has its mode changed
/// (`create_new`), and nothing is created for an in-memory database, a SQLite URI
/// filename, a special name, or options that do not create files.
#[cfg(unix)]
pub(super) fn create(options: &SqliteConnectOptions) {
    use std::os::unix::fs::OpenOptionsExt;

    let path = options.get_filename();
    let name = path.to_string_lossy();
    // `:memory:` and `""` are SQLite's in-memory and temporary databases; a `file:` name
    // is a URI SQLite parses itself (sqlx passes SQLITE_OPEN_URI).
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return;
    }
    // The options have no getters for these; their URL form states the open mode
    // (`rwc` only when creating a file on disk) and any VFS, whose files may be elsewhere.
    let url = options.to_url_lossy();
    let creates = url.query_pairs().any(|(k, v)| k == "mode" && v == "rwc");
    let plain = !url
        .query_pairs()
        .any(|(k, _)| k == "vfs" || k == "immutable");
    if !(creates && plain) {
        return;
    }
    // Any failure (the file exists, the directory is missing or read-only) is left for
    // SQLite to meet and report in its own words, which the callers' advice is keyed on.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

/// File modes are Unix's: elsewhere SQLite creates the file as it does.
#[cfg(not(unix))]
pub(super) fn create(_options: &SqliteConnectOptions) {}
