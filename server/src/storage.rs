//! Opening the database the options name exactly as the `apitoken` CLI does (see
//! `apitoken_ops`), so that a token the CLI issued authenticates here, and putting the
//! coherent cache in front of it.

use crate::args::Args;
use crate::feed::Cache;
use apitoken::{
    CachedStore, ChangeFeed, DynTokenStore, Limits, ScopeCatalog, StoreError, TokenIssuer,
    TokenIssuerBuilder,
};
pub(crate) use apitoken_ops::Handle;
use core::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The issuer every handler uses: over the database, or over the cache in front of it
/// (boxed, so that handlers need not know which).
pub(crate) type Issuer = TokenIssuer<DynTokenStore>;

/// What `open` made: the issuer, the database's handle, and the cache's feed to follow
/// before serving (none without a cache).
pub(crate) struct Opened {
    pub(crate) issuer: Issuer,
    pub(crate) handle: Handle,
    pub(crate) feed: Option<Following>,
}

/// A cache and the feed that keeps it coherent: spawn [`crate::feed::follow`] with them.
pub(crate) struct Following {
    pub(crate) cache: Arc<Cache>,
    pub(crate) feed: ChangeFeed,
    pub(crate) staleness: Duration,
}

/// Opens the store, migrates its schema, checks the hash key against the one the
/// database was created with, and builds the issuer: by default over a coherent cache
/// whose feed starts at the log's head, without one under `--no-cache` or when the store
/// keeps no event log.
pub(crate) async fn open(args: &Args) -> Result<Opened, String> {
    let shown = args.storage.db.display();
    // An empty database would refuse every request: the first token comes from the CLI.
    let missing = apitoken_ops::Missing::Refuse(format!(
        "issue the first token with `apitoken issue --db {shown} --env <UUID> --note <TEXT> --scope environment.apiTokens.write` (it creates the file), or point --db or APITOKEN_DB at your database"
    ));
    let handle = apitoken_ops::open(&args.storage, missing).await?;
    let catalog = ScopeCatalog::reference().extend(args.extra_scopes.iter().cloned());
    let limits = args.cap.apply(Limits {
        max_live: args.max_live_tokens,
        max_depth: NonZeroU32::new(args.max_delegation_depth),
        max_per_creator: NonZeroU32::new(args.max_tokens_per_token),
        ..Limits::default()
    });
    let configure = |builder: TokenIssuerBuilder<DynTokenStore>| {
        builder
            .scope_catalog(catalog.clone())
            .limits(limits)
            .leak_retention(args.leak_retention)
            .last_use_interval(Some(apitoken_ops::LAST_USE_INTERVAL))
            .lifetime_policy(args.lifetime.policy())
    };
    let (issuer, feed) = if args.no_cache {
        (handle.issuer(configure(handle.builder())).await?, None)
    } else {
        let staleness = Duration::from_millis(u64::from(args.cache_staleness_ms.get()));
        let inner: DynTokenStore = Box::new(handle.store());
        let cache = Arc::new(
            CachedStore::new(inner)
                .coherent()
                .ttl(crate::args::seconds(args.cache_ttl))
                .staleness_bound(staleness),
        );
        let store: DynTokenStore = Box::new(cache.clone());
        // Prepared first: the log's head is read from the schema `prepare` writes.
        let issuer = handle.issuer(configure(handle.builder_on(store))).await?;
        match watch(&cache).await {
            Ok(feed) => (
                issuer,
                Some(Following {
                    cache,
                    feed,
                    staleness,
                }),
            ),
            Err(StoreError::NoEventLog) => {
                tracing::warn!(
                    "the token store keeps no event log, so a cache could not learn of tokens revoked by other processes: every authentication reads the store"
                );
                (handle.issuer(configure(handle.builder())).await?, None)
            }
            Err(e) => {
                handle.close().await;
                return Err(format!(
                    "cannot start following the event log for the cache: {e}; or start with --no-cache (APITOKEN_NO_CACHE=1) to read the store on every request"
                ));
            }
        }
    };
    for warning in handle.warnings() {
        tracing::warn!("{warning}");
    }
    if !issuer.hasher().fingerprint().is_keyed() {
        tracing::warn!(
            "no hash key: tokens are stored as unkeyed BLAKE3 hashes, which anyone holding a copy of the database can check a guessed or leaked token against; a new deployment should set APITOKEN_HASH_KEY (64 hex digits) or --hash-key-file (a database keeps the key it was created with)"
        );
    }
    Ok(Opened {
        issuer,
        handle,
        feed,
    })
}

/// The feed of the changes made from now on: those before the head cannot be in the
/// cache, which is empty.
async fn watch(cache: &Cache) -> Result<ChangeFeed, StoreError> {
    let head = apitoken::TokenStore::event_head(cache).await?;
    apitoken::TokenStore::watch(cache, head)
}
