//! Opening the database the options name exactly as the `apitoken` CLI does (see
//! `apitoken_ops`), so that a token the CLI issued authenticates here.

use crate::args::Args;
use apitoken::{DynTokenStore, Limits, ScopeCatalog, TokenIssuer};
pub(crate) use apitoken_ops::Handle;
use core::num::NonZeroU32;

/// The issuer every handler uses.
pub(crate) type Issuer = TokenIssuer<DynTokenStore>;

/// Opens the store, migrates its schema, checks the hash key against the one the
/// database was created with, and builds the issuer.
pub(crate) async fn open(args: &Args) -> Result<(Issuer, Handle), String> {
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
    let builder = handle.builder().scope_catalog(catalog).limits(limits);
    let issuer = handle.issuer(builder).await?;
    for warning in handle.warnings() {
        tracing::warn!("{warning}");
    }
    if !issuer.hasher().fingerprint().is_keyed() {
        tracing::warn!(
            "no hash key: tokens are stored as unkeyed BLAKE3 hashes, which anyone holding a copy of the database can check a guessed or leaked token against; a new deployment should set APITOKEN_HASH_KEY (64 hex digits) or --hash-key-file (a database keeps the key it was created with)"
        );
    }
    Ok((issuer, handle))
}
