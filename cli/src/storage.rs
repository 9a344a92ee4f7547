//! Opening the database the options name (see `apitoken_ops`), and the issuer on it.

use crate::args::Global;
use crate::failure::Failure;
use apitoken::{ScopeCatalog, TokenIssuer, TokenStore};

/// The issuer every store-backed command uses.
pub(crate) type Issuer = TokenIssuer<Box<dyn TokenStore>>;

/// Whether a missing SQLite file may be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    /// `issue`: create the file on first use.
    Create,
    /// Every other command: a missing file is a mistake (a mistyped path, say).
    Refuse,
}

/// Opens the store, runs `command` with the issuer, then closes the store's connections
/// whatever the outcome (for SQLite this folds the write-ahead log into the file, so
/// that `apitoken.db` alone holds every token).
pub(crate) async fn with_issuer<T>(
    global: &Global,
    missing: Missing,
    command: impl AsyncFnOnce(&Issuer) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let missing = match missing {
        Missing::Create => apitoken_ops::Missing::Create,
        Missing::Refuse => apitoken_ops::Missing::Refuse(
            "issue a token first (`apitoken issue` creates it), or point --db or APITOKEN_DB at your database"
                .to_owned(),
        ),
    };
    let (handle, key) = apitoken_ops::open(&global.storage, missing)
        .await
        .map_err(Failure::usage)?;
    let mut builder = TokenIssuer::builder(handle.store()).scope_catalog(catalog(global));
    if let Some(key) = key {
        builder = builder.hash_key(key);
    }
    let issuer = builder.build();
    let result = command(&issuer).await;
    drop(issuer);
    handle.close().await;
    result
}

/// The scopes `issue` accepts.
pub(crate) fn catalog(global: &Global) -> ScopeCatalog {
    ScopeCatalog::reference().extend(global.extra_scopes.iter().cloned())
}
