//! The leak path: [`TokenIssuer::revoke_leaked`].

use super::TokenIssuer;
use crate::error::Error;
use crate::event::LeakDetails;
use crate::model::{EnvironmentId, Token, TokenId};
use crate::observe;
use crate::store::{Revoked, TokenStore};
use std::collections::HashMap;

/// What [`TokenIssuer::revoke_leaked`] found, and did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeakOutcome {
    /// Ours and live: revoked now, with what it took with it
    /// ([`Revoked::cascade`]: the tokens it created, its rotated predecessors).
    Revoked(Revoked),
    /// Ours, and revoked before: nothing changed.
    AlreadyRevoked(Token),
    /// Ours, and expired (a rotated predecessor past its grace period, say): it no longer
    /// authenticates, so nothing changed.
    Expired(Token),
    /// In this issuer's format, checksum included, but no store holds it: never issued
    /// here, or purged since it ended.
    Unknown,
    /// Not in this issuer's format (another prefix, a wrong checksum, not a token).
    NotOurs,
}

impl LeakOutcome {
    /// `"revoked"`, `"already_revoked"`, `"expired"`, `"unknown"` or `"not_ours"`.
    pub fn name(&self) -> &'static str {
        match self {
            LeakOutcome::Revoked(_) => "revoked",
            LeakOutcome::AlreadyRevoked(_) => "already_revoked",
            LeakOutcome::Expired(_) => "expired",
            LeakOutcome::Unknown => "unknown",
            LeakOutcome::NotOurs => "not_ours",
        }
    }

    /// Whether the string was one of this issuer's tokens, revoked now or before (or
    /// expired): what GitHub's feedback calls a `true_positive`.
    pub fn is_ours(&self) -> bool {
        self.token().is_some()
    }

    /// The token, when it was ours (as revoked, for [`Revoked`](Self::Revoked)).
    pub fn token(&self) -> Option<&Token> {
        match self {
            LeakOutcome::Revoked(revoked) => Some(&revoked.token),
            LeakOutcome::AlreadyRevoked(token) | LeakOutcome::Expired(token) => Some(token),
            LeakOutcome::Unknown | LeakOutcome::NotOurs => None,
        }
    }
}

impl<S: TokenStore> TokenIssuer<S> {
    /// Revokes a token reported leaked: `reported` is the string a secret-scanning partner
    /// (or anyone) found, `leak` who reported it and where it was found.
    ///
    /// The string is read as a token of this issuer's format; one that is not
    /// ([`LeakOutcome::NotOurs`]) or that no store holds ([`LeakOutcome::Unknown`]) changes
    /// nothing. A live one is revoked with everything a revocation takes with it, in any
    /// environment, as one event `Leaked` holding `leak` (the cascade's events are
    /// `Revoked`, caused by it), so every cache following the event log drops it. A
    /// token revoked or expired already changes nothing: the same report twice changes
    /// nothing the second time. No caller authority is checked: whoever holds a token may
    /// have it revoked, which is what a leak report proves.
    ///
    /// Nothing here logs or keeps the reported string.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use apitoken::{
    ///     Creator, EnvironmentId, IssueRequest, LeakDetails, LeakOutcome, LeakReporter,
    ///     MemoryStore, Note, TokenIssuer, UserId,
    /// };
    /// use uuid::Uuid;
    ///
    /// let issuer = TokenIssuer::new(MemoryStore::new());
    /// let env = EnvironmentId::from_uuid(Uuid::nil());
    /// let me = Creator::new(UserId::from_uuid(Uuid::nil()));
    /// let issued = issuer.issue(env, me, IssueRequest::new(Note::new("CI")?)).await?;
    ///
    /// let leak = LeakDetails::new(LeakReporter::GitHub)
    ///     .with_source("Commit")
    ///     .with_url("https://github.com/octo/app/blob/1a2b/.env");
    /// let secret = issued.raw.expose_secret();
    /// let outcome = issuer.revoke_leaked(secret, &leak).await?;
    /// assert!(matches!(outcome, LeakOutcome::Revoked(_)));
    /// assert!(issuer.authenticate(secret).await.is_err());
    ///
    /// // The same report again changes nothing; strings that are not ours are told apart.
    /// let again = issuer.revoke_leaked(secret, &leak).await?;
    /// assert!(matches!(again, LeakOutcome::AlreadyRevoked(_)));
    /// assert_eq!(issuer.revoke_leaked("ghp_not_ours", &leak).await?, LeakOutcome::NotOurs);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Only the store's ([`Error::Store`]); the string itself is never an error.
    pub async fn revoke_leaked(
        &self,
        reported: &str,
        leak: &LeakDetails,
    ) -> Result<LeakOutcome, Error> {
        let mut outcomes = self.revoke_leaks([(reported, leak)]).await?;
        // One report, one outcome.
        Ok(outcomes.pop().unwrap_or(LeakOutcome::NotOurs))
    }

    /// [`revoke_leaked`](Self::revoke_leaked) for every string of a report, each with its
    /// own [`LeakDetails`]: one outcome per string, in order. The live tokens are revoked
    /// together ([`TokenStore::revoke_leaked_many`]: on SQLite and PostgreSQL, a
    /// transaction per hundred tokens), so that a report of a thousand matches waits on
    /// ten commits, not a thousand. A token named twice is revoked once: the second
    /// naming answers [`LeakOutcome::AlreadyRevoked`].
    ///
    /// # Errors
    ///
    /// Only the store's ([`Error::Store`]). Tokens revoked before the error stay revoked;
    /// the same report again finds them already revoked and goes on with the others.
    pub async fn revoke_leaks<'a>(
        &self,
        reports: impl IntoIterator<Item = (&'a str, &'a LeakDetails)>,
    ) -> Result<Vec<LeakOutcome>, Error> {
        /// What is known of a string before the revocations.
        enum Found {
            Known(LeakOutcome),
            /// Live: its entry in the batch, and whether an earlier string named it too.
            Live {
                entry: usize,
                again: bool,
            },
        }
        let now = self.now();
        // Ours (parsed, hashed under every key of the keyring) or not, then every hash
        // looked up at once.
        let mut parsed: Vec<Option<(core::ops::Range<usize>, &LeakDetails)>> = Vec::new();
        let mut hashes = Vec::new();
        for (reported, leak) in reports {
            parsed.push(self.format.parse(reported).ok().map(|token| {
                let first = hashes.len();
                let candidates = self
                    .keyring()
                    .candidates(token.expose_secret().as_bytes(), None);
                hashes.extend_from_slice(&candidates);
                (first..hashes.len(), leak)
            }));
        }
        let mut looked_up =
            observe::store_call("find_many_by_hash", self.store.find_many_by_hash(&hashes)).await?;
        let mut found = Vec::with_capacity(parsed.len());
        let mut batch: Vec<(EnvironmentId, TokenId, &LeakDetails)> = Vec::new();
        let mut entries: HashMap<TokenId, usize> = HashMap::new();
        for reported in parsed {
            let Some((at, leak)) = reported else {
                found.push(Found::Known(LeakOutcome::NotOurs));
                continue;
            };
            let token = looked_up
                .get_mut(at)
                .and_then(|found| found.iter_mut().find_map(Option::take));
            found.push(match token {
                None => Found::Known(LeakOutcome::Unknown),
                Some(token) if !token.active => Found::Known(LeakOutcome::AlreadyRevoked(token)),
                Some(token) if !token.is_live_at(now) => Found::Known(LeakOutcome::Expired(token)),
                Some(token) => match entries.get(&token.id) {
                    Some(&entry) => Found::Live { entry, again: true },
                    None => {
                        entries.insert(token.id, batch.len());
                        batch.push((token.environment, token.id, leak));
                        Found::Live {
                            entry: batch.len() - 1,
                            again: false,
                        }
                    }
                },
            });
        }
        let revoked = if batch.is_empty() {
            Vec::new()
        } else {
            observe::store_call(
                "revoke_leaked_many",
                self.store.revoke_leaked_many(&batch, now),
            )
            .await?
        };
        let outcomes: Vec<LeakOutcome> = found
            .into_iter()
            .map(|found| match found {
                Found::Known(outcome) => outcome,
                Found::Live { entry, again } => match revoked.get(entry) {
                    // Gone (purged) since it was found.
                    None | Some(None) => LeakOutcome::Unknown,
                    Some(Some(done)) if !again && done.token.revoked_at == Some(now) => {
                        LeakOutcome::Revoked(done.clone())
                    }
                    // Named before in this report, or revoked by someone else since it
                    // was found: nothing changed for it.
                    Some(Some(done)) => LeakOutcome::AlreadyRevoked(done.token.clone()),
                },
            })
            .collect();
        for outcome in &outcomes {
            if let LeakOutcome::Revoked(done) = outcome {
                observe::count_changes("leaked", 1);
                observe::count_changes("revoked", 1 + done.cascade.len() as u64);
                tracing::info!(
                    token_id = %done.token.id,
                    environment = %done.token.environment,
                    cascade = done.cascade.len(),
                    "leaked token revoked"
                );
            }
        }
        tracing::info!(
            reported = outcomes.len(),
            revoked = outcomes
                .iter()
                .filter(|o| matches!(o, LeakOutcome::Revoked(_)))
                .count(),
            "leak report handled"
        );
        Ok(outcomes)
    }
}
