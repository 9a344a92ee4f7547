//! Opening the database the options name (see `apitoken_ops`), and the issuer on it.

use crate::args::Global;
use crate::failure::{Failure, warn};
use apitoken::{DynTokenStore, ScopeCatalog, TokenIssuer};

/// The issuer every store-backed command uses.
pub(crate) type Issuer = TokenIssuer<DynTokenStore>;

/// What a command does with the database, which decides how it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// `issue`: creates the file and the schema, or upgrades the schema.
    Create,
    /// `revoke`, `rotate`, `purge`: need an existing apitoken database (an older schema
    /// is upgraded).
    Write,
    /// `list`, `get`, `verify`, `events`, `keys status`: write nothing, not even last use
    /// (an operator's check is not a use), so they work on a read-only file and behind a
    /// stuck writer.
    Read,
    /// `keys retire`: as `Write`, accepting a keyring that lacks the key being retired.
    Retiring(apitoken::KeyFingerprint),
}

/// Opens the store, runs `command` with the issuer, then closes the store's connections
/// whatever the outcome (for SQLite this folds the write-ahead log into the file, so
/// that `apitoken.db` alone holds every token).
pub(crate) async fn with_issuer<T>(
    global: &Global,
    access: Access,
    command: impl AsyncFnOnce(&Issuer) -> Result<T, Failure>,
) -> Result<T, Failure> {
    const MISSING: &str = "issue a token first (`apitoken issue` creates it), or point --db or APITOKEN_DB at your database";
    let storage = &global.storage;
    let handle = match access {
        Access::Create => apitoken_ops::open(storage, apitoken_ops::Missing::Create).await,
        Access::Write => {
            apitoken_ops::open_existing(storage, apitoken_ops::Access::Write, MISSING).await
        }
        Access::Read => {
            apitoken_ops::open_existing(storage, apitoken_ops::Access::Read, MISSING).await
        }
        Access::Retiring(key) => {
            apitoken_ops::open_existing_retiring(
                storage,
                apitoken_ops::Access::Write,
                MISSING,
                Some(key),
            )
            .await
        }
    }
    .map_err(Failure::usage)?;
    let limits = global.cap.apply(apitoken::Limits::default());
    let mut builder = handle
        .builder()
        .scope_catalog(catalog(global))
        .limits(limits)
        .last_use_interval(Some(apitoken_ops::LAST_USE_INTERVAL))
        .lifetime_policy(global.lifetime.policy());
    if access == Access::Read {
        builder = builder.last_use_interval(None).rehash_on_use(false);
    }
    let issuer = handle.issuer(builder).await.map_err(Failure::usage)?;
    // Only once the database is open: a failure stays the one `error:` line it was.
    for warning in handle.warnings() {
        warn(warning);
    }
    let result = command(&issuer).await;
    drop(issuer);
    handle.close().await;
    result
}

/// The scopes `issue` accepts.
pub(crate) fn catalog(global: &Global) -> ScopeCatalog {
    ScopeCatalog::reference().extend(global.extra_scopes.iter().cloned())
}
