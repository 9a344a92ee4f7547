//! A SQLite database the library creates is private to its owner (mode 0600), and so are
//! the `-wal` and `-shm` files SQLite makes beside it, whatever the umask; an existing
//! file keeps its mode and its contents.
#![cfg(all(unix, any(feature = "sqlite", feature = "sqlite-unbundled")))]

use apitoken::{
    Creator, EnvironmentId, IssueRequest, Note, SqliteStore, TokenIssuer, TokenStore, UserId,
};
use sqlx::sqlite::SqliteConnectOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use uuid::Uuid;

/// Set in the child process that runs a test's body under umask 022.
const CHILD: &str = "APITOKEN_TEST_UMASK_022_CHILD";

/// Whether this process is the one to run `test`'s body. The umask belongs to the whole
/// process (and setting it needs unsafe code), so the test runs itself again, alone, in a
/// child started by `sh` after `umask 022`: the usual default, under which SQLite alone
/// creates its files 0644. The child's failure fails the test.
fn in_child_under_umask_022(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{test} under umask 022 failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `--exact` with a mistyped name runs nothing and succeeds.
    assert!(stdout.contains("1 passed"), "{test} did not run: {stdout}");
    false
}

/// A directory of its own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "apitoken-modes-{test}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Issues a token into `store` and returns the modes of the database, its `-wal` and its
/// `-shm` while the store is open (the write-ahead log and the shared memory exist then).
async fn modes_after_issuing(store: SqliteStore, path: &Path) -> [String; 3] {
    let issuer = TokenIssuer::builder(store).prepare().await.unwrap();
    issuer
        .issue(
            EnvironmentId::from_uuid(Uuid::from_u128(1)),
            Creator::new(UserId::from_uuid(Uuid::from_u128(2))),
            IssueRequest::new(Note::new("modes").unwrap()),
        )
        .await
        .unwrap();
    let modes =
        ["", "-wal", "-shm"].map(|suffix| format!("{:04o}", mode(&with_suffix(path, suffix))));
    issuer.store().close().await;
    modes
}

#[test]
fn a_new_database_and_its_wal_and_shm_are_private() {
    if !in_child_under_umask_022("a_new_database_and_its_wal_and_shm_are_private") {
        return;
    }
    let scratch = Scratch::new("new");
    // The umask the child runs under lets other users read a file created the usual way.
    let probe = scratch.0.join("probe");
    std::fs::write(&probe, b"").unwrap();
    assert_eq!(mode(&probe), 0o644, "umask 022 is in effect");

    let opened = scratch.0.join("opened.db");
    let connected = scratch.0.join("connected.db");
    let with_options = scratch.0.join("with options.db");
    block_on(async {
        let store = SqliteStore::open(&opened).await.unwrap();
        assert_eq!(
            modes_after_issuing(store, &opened).await,
            ["0600"; 3],
            "open"
        );
        let url = format!("sqlite://{}", connected.display());
        let store = SqliteStore::connect(&url).await.unwrap();
        assert_eq!(
            modes_after_issuing(store, &connected).await,
            ["0600"; 3],
            "connect"
        );
        let options = SqliteConnectOptions::new()
            .filename(&with_options)
            .create_if_missing(true);
        let store = SqliteStore::connect_with(options).await.unwrap();
        assert_eq!(
            modes_after_issuing(store, &with_options).await,
            ["0600"; 3],
            "connect_with"
        );
    });
}

/// Opening an existing file changes neither its mode (the operator chose it) nor its
/// contents; a store that is not to create a file creates none.
#[test]
fn an_existing_file_keeps_its_mode_and_contents() {
    let scratch = Scratch::new("existing");
    let path = scratch.0.join("tokens.db");
    block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        modes_after_issuing(store, &path).await;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(mode(&path), 0o640);
        assert!(std::fs::read(&path).unwrap() == before, "the file changed");
        let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM apitoken_tokens")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tokens, 1);
        store.close().await;

        let missing = scratch.0.join("missing.db");
        let options = SqliteConnectOptions::new().filename(&missing);
        assert!(SqliteStore::connect_with(options).await.is_err());
        assert!(!missing.exists(), "created without create_if_missing");

        // An in-memory database is no file (sqlx names it `file:sqlx-in-memory-N`).
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.close().await;
        let stray = std::fs::read_dir(".")
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("file:"));
        assert!(stray.is_none(), "created {stray:?}");
    });
}
