//! What the SQL stores share: the record's columns, decoding and binding, the sequences
//! of statements (insert under a limit, rotation, migration, the hash key binding) behind
//! [`SqlDialect`], and error mapping.

use super::memory::check_predecessor;
use super::{
    BoxError, KeyUsage, Limits, PageRequest, Rehash, Revoked, Rotation, StoreError, UniqueKey,
};
use crate::cidr::AllowedCidrs;
use crate::event::{
    Actor, Event, EventBatch, EventCursor, EventKind, EventPage, LeakDetails, LeakReporter, Revoker,
};
use crate::format::Checksum;
use crate::hash::{KeyFingerprint, KeyringFingerprints, TokenHash};
use crate::model::{Creator, EnvironmentId, StoredToken, Token, TokenId, UserId};
use crate::note::Note;
use crate::scope::{Scope, Scopes};
use chrono::{DateTime, Utc};
use core::num::NonZeroU32;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

/// A connection of dialect `D`'s engine (a transaction derefs to one).
pub(crate) type Conn<D> = <<D as SqlDialect>::Db as Database>::Connection;

/// A row of dialect `D`'s engine.
pub(crate) type SqlRow<D> = <<D as SqlDialect>::Db as Database>::Row;

/// What differs between the SQL engines in the statements both stores run: the SQL text
/// (placeholders, functions, locking clauses), how a time is stored and read, how a
/// limit check serializes with the others of its environment, and how a driver error
/// reads. The sequences themselves (what is read, checked and written, in which order)
/// are the provided methods, written once. Transactions are begun and committed by each
/// store, which knows its pools, its locking mode and its retries.
///
/// The `where` clauses list the column types the shared statements bind and read.
pub(crate) trait SqlDialect
where
    Self: Sized,
    for<'c> &'c mut Conn<Self>: Executor<'c, Database = Self::Db>,
    <Self::Db as Database>::Arguments: IntoArguments<Self::Db>,
    for<'e> Uuid: Encode<'e, Self::Db> + Decode<'e, Self::Db> + Type<Self::Db>,
    for<'e> Option<Uuid>: Encode<'e, Self::Db>,
    for<'e> String: Encode<'e, Self::Db> + Decode<'e, Self::Db> + Type<Self::Db>,
    for<'e> &'e str: Encode<'e, Self::Db> + Type<Self::Db>,
    for<'e> Option<&'e str>: Encode<'e, Self::Db>,
    for<'e> &'e [u8]: Encode<'e, Self::Db> + Type<Self::Db>,
    for<'e> bool: Encode<'e, Self::Db> + Decode<'e, Self::Db> + Type<Self::Db>,
    for<'e> i64: Encode<'e, Self::Db> + Decode<'e, Self::Db> + Type<Self::Db>,
    for<'e> Vec<u8>: Decode<'e, Self::Db> + Type<Self::Db>,
    for<'e> Option<Self::Time>: Encode<'e, Self::Db>,
    for<'r> &'r str: ColumnIndex<SqlRow<Self>>,
    usize: ColumnIndex<SqlRow<Self>>,
{
    type Db: Database;
    /// A time as a column holds it.
    type Time: for<'e> Encode<'e, Self::Db> + Type<Self::Db> + Send;

    /// The schema migrations, applied in order; the schema version is how many have run.
    const MIGRATIONS: &'static [&'static str];
    /// Creates `apitoken_meta` if it is missing.
    const CREATE_META: &'static str;
    /// The value of the meta key (1).
    const SELECT_META: &'static str;
    /// Sets the meta key (1) to the value (2).
    const UPSERT_META: &'static str;
    /// Inserts a record: the 20 columns of [`insert_row`](Self::insert_row), in its order.
    const INSERT: &'static str;
    /// Adds one to the count of environment (1)'s tokens, creating its row, and returns
    /// the new count (`apitoken_environments`, which makes the per-environment cap one
    /// indexed read instead of a count).
    const COUNT_ONE_MORE: &'static str;
    /// Takes (1) from the count of environment (2)'s tokens.
    const COUNT_FEWER: &'static str;
    /// How many tokens of the environment (1) are live at (2), other than (3) (may be null).
    const COUNT_LIVE: &'static str;
    /// How many tokens the token (1) of environment (2) created are live at (3).
    const COUNT_CREATED_BY: &'static str;
    /// How many creating tokens are above token (2) of environment (1), counting at most
    /// (3) + 1: 0 for a token a user created.
    const DEPTH: &'static str;
    /// `token_columns!()` of the token of environment (1) with id (2).
    const SELECT_TOKEN: &'static str;
    /// `token_columns!()` and `replaced_by` of the predecessor of a rotation: environment
    /// (1), id (2); locked until the transaction ends where the engine locks rows.
    const SELECT_PREDECESSOR: &'static str;
    /// Sets the expiry of the token of environment (2) and id (3) to (1) unless it expires
    /// earlier, and its successor to (4); returns `token_columns!()`.
    const MARK_ROTATED: &'static str;
    /// Revokes the token of environment (2) and id (3) at (1) if it is active; returns
    /// `token_columns!()`.
    const REVOKE: &'static str;
    /// Revokes at (1), where they are live at (1), the tokens a revocation of token (3) of
    /// environment (2) takes with it, and returns their ids: a recursive walk down
    /// `created_by_token` through tokens live at (1), and back along `replaced_by` to
    /// predecessors whatever their state, each branch on its own index.
    const REVOKE_CASCADE: &'static str;
    /// Whether token (3) is token (2) of environment (1) or reachable from it along
    /// `created_by_token` and `replaced_by` (see `TokenStore::descends_from`).
    const DESCENDS_FROM: &'static str;
    /// Deletes at most (2) tokens that ended before (1) and created no unrevoked token;
    /// returns the `environment_id` of each.
    const PURGE: &'static str;
    /// A page of environment (1) after `(created_at, id)` = ((2), (3)), at most (4) rows.
    const LIST: &'static str;
    /// The same, of tokens live at (4); at most (5) rows.
    const LIST_LIVE: &'static str;
    /// The same as `LIST`, of tokens created for user (4); at most (5) rows.
    const LIST_CREATED_BY: &'static str;
    /// The same as `LIST`, of tokens live at (4) created for user (5); at most (6) rows.
    const LIST_LIVE_CREATED_BY: &'static str;
    /// Sets the last use of the token with id (2) to (1) and its address to (3), unless
    /// the last use is at (1) or later already.
    const RECORD_LAST_USE: &'static str;
    /// A time before any the engine stores: where the first page of a listing starts.
    const EARLIEST: DateTime<Utc>;
    /// `event_columns!()` of the events after sequence (1), at most (2), in order.
    const SELECT_EVENTS: &'static str;
    /// The same, of environment (1) after (2), at most (3).
    const SELECT_ENVIRONMENT_EVENTS: &'static str;
    /// The log's `last_sequence` and `pruned_through`.
    const SELECT_EVENT_LOG: &'static str;
    /// Deletes at most (2) of the oldest events older than (1); returns their sequences.
    const PRUNE_EVENTS: &'static str;
    /// Raises `pruned_through` to (1).
    const MARK_PRUNED: &'static str;
    /// Empties the reporter's data (source, URL, type) of at most (2) of the oldest leak
    /// events older than (1) that still hold some; returns their sequences.
    const FORGET_LEAK_DETAILS: &'static str;

    /// Numbers and writes the events of `batch` (at least one token), inside the caller's
    /// transaction, and tells listeners once it commits, where the engine has them. The
    /// numbers come from `apitoken_event_log`'s one row, which stays locked until the
    /// transaction ends, so appends commit in the order of their sequence numbers.
    async fn append_batch(conn: &mut Conn<Self>, batch: &EventBatch<'_>) -> Result<(), StoreError>;

    /// Sets the hash of token (3) to (1) and its key to (2) if its hash is (4) and it is
    /// live at (5); returns its `environment_id`.
    const REHASH: &'static str;
    /// Per key of the tokens live at (1): `hash_key`, `live`, `never_expiring` and
    /// `latest_expiry`.
    const KEY_USAGE: &'static str;
    /// The fingerprints of `apitoken_hash_keys`.
    const SELECT_HASH_KEYS: &'static str;
    /// Adds fingerprint (1) to `apitoken_hash_keys` unless it is there.
    const ADD_HASH_KEY: &'static str;
    /// Removes fingerprint (1) from `apitoken_hash_keys`.
    const DELETE_HASH_KEY: &'static str;
    /// `environment_id` and `id` of at most (3) tokens hashed with key (1) live at (2).
    const LIVE_UNDER_KEY: &'static str;
    /// How many tokens hashed with key (1) are live at (2).
    const COUNT_LIVE_UNDER_KEY: &'static str;

    /// Maps a driver error to a [`StoreError`].
    fn err(e: sqlx::Error) -> StoreError;

    /// `at` as a column holds it.
    fn time(at: DateTime<Utc>) -> Self::Time;

    /// Reads a nullable time column.
    fn read_time(row: &SqlRow<Self>, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Reads `created_at`.
    fn read_created_at(row: &SqlRow<Self>) -> Result<DateTime<Utc>, StoreError>;

    /// Serializes the transaction with every other limit check, delegated insert,
    /// rotation and revocation of the environment, until it ends.
    async fn lock_environment(
        conn: &mut Conn<Self>,
        environment: EnvironmentId,
    ) -> Result<(), StoreError>;

    /// The record of the first of `hashes` (by position) among the `rows` of a keyring
    /// look-up (`found`, `hash`, then `token_columns!()`): every row is decoded and passed
    /// through `merge`, the decoy too, so that a miss does a hit's work.
    fn first_of_candidates(
        rows: Vec<SqlRow<Self>>,
        hashes: &[TokenHash],
        merge: impl Fn(Token) -> Token,
    ) -> Result<Option<(usize, Token)>, StoreError> {
        let mut best: Option<(usize, Token)> = None;
        for row in rows {
            let found: bool = row.try_get("found").map_err(Self::err)?;
            let hash: Vec<u8> = row.try_get("hash").map_err(Self::err)?;
            let token = merge(Self::decode(row)?);
            let position = hashes.iter().position(|h| h.as_bytes().as_slice() == hash);
            if found
                && let Some(i) = position
                && best.as_ref().is_none_or(|(j, _)| i < *j)
            {
                best = Some((i, token));
            }
        }
        Ok(best)
    }

    /// Decodes and validates a row of `token_columns!()` (other columns are ignored).
    fn decode(row: SqlRow<Self>) -> Result<Token, StoreError> {
        let err = Self::err;
        let created_at = Self::read_created_at(&row)?;
        TokenRow {
            id: row.try_get("id").map_err(err)?,
            environment_id: row.try_get("environment_id").map_err(err)?,
            checksum: row.try_get("checksum").map_err(err)?,
            created_by_id: row.try_get("created_by_id").map_err(err)?,
            created_by_alias: row.try_get("created_by_alias").map_err(err)?,
            created_by_first_name: row.try_get("created_by_first_name").map_err(err)?,
            created_by_last_name: row.try_get("created_by_last_name").map_err(err)?,
            created_by_email: row.try_get("created_by_email").map_err(err)?,
            created_at,
            active: row.try_get("active").map_err(err)?,
            note: row.try_get("note").map_err(err)?,
            scopes: row.try_get("scopes").map_err(err)?,
            expires_at: Self::read_time(&row, "expires_at")?,
            last_used_at: Self::read_time(&row, "last_used_at")?,
            revoked_at: Self::read_time(&row, "revoked_at")?,
            created_by_token: row.try_get("created_by_token").map_err(err)?,
            allowed_cidrs: row.try_get("allowed_cidrs").map_err(err)?,
            last_used_ip: row.try_get("last_used_ip").map_err(err)?,
        }
        .into_token()
    }

    /// Inserts the row and counts it in its environment, failing with
    /// [`StoreError::EnvironmentFull`] past `max_total`. Runs inside the caller's write
    /// transaction, which a failure must roll back.
    async fn insert_row(
        conn: &mut Conn<Self>,
        stored: &StoredToken,
        max_total: Option<NonZeroU32>,
    ) -> Result<(), StoreError> {
        let t = &stored.token;
        let count: i64 = sqlx::query_scalar::<Self::Db, i64>(Self::COUNT_ONE_MORE)
            .bind(*t.environment.as_uuid())
            .fetch_one(&mut *conn)
            .await
            .map_err(Self::err)?;
        if let Some(limit) = max_total
            && count > i64::from(limit.get())
        {
            return Err(StoreError::EnvironmentFull {
                environment: t.environment,
                limit: limit.get(),
            });
        }
        let allowed_cidrs = t.allowed_cidrs.as_ref().map(AllowedCidrs::to_string);
        let last_used_ip = t.last_used_ip.map(|ip| ip.to_string());
        sqlx::query::<Self::Db>(Self::INSERT)
            .bind(*t.id.as_uuid())
            .bind(stored.hash.as_bytes().as_slice())
            .bind(*t.environment.as_uuid())
            .bind(t.checksum.as_str())
            .bind(*t.created_by.id.as_uuid())
            .bind(t.created_by.alias.as_deref())
            .bind(t.created_by.first_name.as_deref())
            .bind(t.created_by.last_name.as_deref())
            .bind(t.created_by.email.as_deref())
            .bind(Self::time(t.created_at))
            .bind(t.active)
            .bind(t.note.as_str())
            .bind(scopes_column(&t.scopes))
            .bind(t.expires_at.map(Self::time))
            .bind(t.last_used_at.map(Self::time))
            .bind(t.revoked_at.map(Self::time))
            .bind(t.created_by_token.map(|id| *id.as_uuid()))
            .bind(stored.hash_key.to_string())
            .bind(allowed_cidrs.as_deref())
            .bind(last_used_ip.as_deref())
            .execute(&mut *conn)
            .await
            .map_err(Self::err)?;
        Ok(())
    }

    /// Fails with `LimitReached` when the environment has `limit` tokens live at `now`,
    /// not counting `replacing`, after [locking](Self::lock_environment) the environment.
    /// Runs inside the caller's write transaction.
    async fn check_live_limit(
        conn: &mut Conn<Self>,
        environment: EnvironmentId,
        now: DateTime<Utc>,
        limit: Option<NonZeroU32>,
        replacing: Option<TokenId>,
    ) -> Result<(), StoreError> {
        let Some(limit) = limit else {
            return Ok(());
        };
        Self::lock_environment(conn, environment).await?;
        let live: i64 = sqlx::query_scalar::<Self::Db, i64>(Self::COUNT_LIVE)
            .bind(*environment.as_uuid())
            .bind(Self::time(now))
            .bind(replacing.map(|id| *id.as_uuid()))
            .fetch_one(&mut *conn)
            .await
            .map_err(Self::err)?;
        if live >= i64::from(limit.get()) {
            return Err(StoreError::LimitReached {
                environment,
                limit: limit.get(),
            });
        }
        Ok(())
    }

    /// For a token created by a token: that its creator is live, and the delegation
    /// bounds. Under the environment's lock, which a revocation takes too, so a token is
    /// never inserted under a creator whose revocation (and its cascade) has committed.
    async fn check_creator(
        conn: &mut Conn<Self>,
        token: &Token,
        creator: TokenId,
        limits: Limits,
    ) -> Result<(), StoreError> {
        let environment = token.environment;
        Self::lock_environment(conn, environment).await?;
        let live = Self::fetch_token(conn, environment, creator)
            .await?
            .is_some_and(|c| c.is_live_at(token.created_at));
        if !live {
            return Err(StoreError::NotLive { id: creator });
        }
        if let Some(limit) = limits.max_depth {
            let depth: i64 = sqlx::query_scalar::<Self::Db, i64>(Self::DEPTH)
                .bind(*environment.as_uuid())
                .bind(*creator.as_uuid())
                .bind(i64::from(limit.get()))
                .fetch_one(&mut *conn)
                .await
                .map_err(Self::err)?;
            if depth >= i64::from(limit.get()) {
                return Err(StoreError::DelegationTooDeep {
                    creator,
                    limit: limit.get(),
                });
            }
        }
        if let Some(limit) = limits.max_per_creator {
            let children: i64 = sqlx::query_scalar::<Self::Db, i64>(Self::COUNT_CREATED_BY)
                .bind(*creator.as_uuid())
                .bind(*environment.as_uuid())
                .bind(Self::time(token.created_at))
                .fetch_one(&mut *conn)
                .await
                .map_err(Self::err)?;
            if children >= i64::from(limit.get()) {
                return Err(StoreError::TooManyDelegated {
                    environment,
                    creator,
                    limit: limit.get(),
                });
            }
        }
        Ok(())
    }

    /// Appends the events of `batches`, numbered in order, inside the caller's
    /// transaction: the last statement a change runs before it commits, so that the log's
    /// lock is held for as short a time as possible.
    async fn append_events(
        conn: &mut Conn<Self>,
        batches: &[EventBatch<'_>],
    ) -> Result<(), StoreError> {
        for batch in batches.iter().filter(|b| !b.tokens.is_empty()) {
            Self::append_batch(conn, batch).await?;
        }
        Ok(())
    }

    /// Up to `limit` events after `after`, of `environment` or of all; fails with
    /// `EventsPruned` when some after `after` may be gone.
    async fn events_in(
        conn: &mut Conn<Self>,
        environment: Option<EnvironmentId>,
        after: EventCursor,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        let after_sequence = i64::try_from(after.sequence()).unwrap_or(i64::MAX);
        let limit = i64::from(limit.clamp(1, 1000));
        let query = match environment {
            Some(environment) => sqlx::query::<Self::Db>(Self::SELECT_ENVIRONMENT_EVENTS)
                .bind(*environment.as_uuid()),
            None => sqlx::query::<Self::Db>(Self::SELECT_EVENTS),
        };
        let rows = query
            .bind(after_sequence)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        let events = rows
            .into_iter()
            .map(Self::decode_event)
            .collect::<Result<Vec<_>, _>>()?;
        // Read after the events: a prune that committed between the two reads is seen
        // (at worst a reader is sent to resynchronise once too often), never missed.
        let (_, pruned_through) = Self::event_log(conn).await?;
        if after.sequence() < pruned_through {
            return Err(StoreError::EventsPruned {
                after,
                resumed: EventCursor::after(pruned_through),
            });
        }
        Ok(EventPage::new(events, after))
    }

    /// The log's last sequence number and how far it was pruned.
    async fn event_log(conn: &mut Conn<Self>) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query::<Self::Db>(Self::SELECT_EVENT_LOG)
            .fetch_one(&mut *conn)
            .await
            .map_err(Self::err)?;
        let read = |column: usize| -> Result<u64, StoreError> {
            let value: i64 = row.try_get(column).map_err(Self::err)?;
            u64::try_from(value).map_err(|e| StoreError::Corrupt {
                message: format!("the event log's position is negative: {value}"),
                source: Some(Box::new(e)),
            })
        };
        Ok((read(0)?, read(1)?))
    }

    /// See [`TokenStore::forget_leak_details`](super::TokenStore::forget_leak_details).
    async fn forget_leak_details_in(
        conn: &mut Conn<Self>,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        let forgotten = sqlx::query_scalar::<Self::Db, i64>(Self::FORGET_LEAK_DETAILS)
            .bind(Self::time(before))
            .bind(i64::from(max))
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        Ok(forgotten.len() as u32)
    }

    /// Deletes at most `max` events older than `before`, inside the caller's transaction.
    async fn prune_events_in(
        conn: &mut Conn<Self>,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        let pruned = sqlx::query_scalar::<Self::Db, i64>(Self::PRUNE_EVENTS)
            .bind(Self::time(before))
            .bind(i64::from(max))
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        if let Some(&through) = pruned.iter().max() {
            sqlx::query::<Self::Db>(Self::MARK_PRUNED)
                .bind(through)
                .execute(&mut *conn)
                .await
                .map_err(Self::err)?;
        }
        Ok(pruned.len() as u32)
    }

    /// Decodes a row of `event_columns!()`.
    fn decode_event(row: SqlRow<Self>) -> Result<Event, StoreError> {
        let sequence: i64 = row.try_get("sequence").map_err(Self::err)?;
        let corrupt = |what: &str| StoreError::Corrupt {
            message: format!("event {sequence}: invalid {what}"),
            source: None,
        };
        let at = Self::read_time(&row, "at")?.ok_or_else(|| corrupt("time"))?;
        let environment: Uuid = row.try_get("environment_id").map_err(Self::err)?;
        let token: Uuid = row.try_get("token_id").map_err(Self::err)?;
        let kind: String = row.try_get("kind").map_err(Self::err)?;
        let actor_kind: String = row.try_get("actor_kind").map_err(Self::err)?;
        let actor_id: Uuid = row.try_get("actor_id").map_err(Self::err)?;
        let other: Option<Uuid> = row.try_get("other_id").map_err(Self::err)?;
        let reporter: Option<String> = row.try_get("leak_reporter").map_err(Self::err)?;
        let leak = match reporter {
            None => None,
            Some(reporter) => {
                let text = |column: &str| -> Result<Option<String>, StoreError> {
                    row.try_get(column).map_err(Self::err)
                };
                let reporter =
                    LeakReporter::from_name(&reporter).ok_or_else(|| corrupt("reporter"))?;
                let mut leak = LeakDetails::new(reporter);
                leak.source = text("leak_source")?;
                leak.url = text("leak_url")?;
                leak.token_type = text("leak_type")?;
                Some(leak)
            }
        };
        Ok(Event {
            sequence: u64::try_from(sequence).map_err(|_| corrupt("sequence"))?,
            at,
            environment: EnvironmentId::from_uuid(environment),
            token: TokenId::from_uuid(token),
            kind: EventKind::from_parts(&kind, other.map(TokenId::from_uuid))
                .ok_or_else(|| corrupt("kind"))?,
            actor: Actor::from_parts(&actor_kind, Some(actor_id))
                .ok_or_else(|| corrupt("actor"))?,
            leak,
        })
    }

    /// Checks the creator and the limits, then inserts, in the order of the
    /// [`TokenStore`](super::TokenStore) contract. Runs inside the caller's write
    /// transaction.
    async fn insert_checked(
        conn: &mut Conn<Self>,
        stored: &StoredToken,
        limits: Limits,
    ) -> Result<(), StoreError> {
        let t = &stored.token;
        if let Some(creator) = t.created_by_token {
            Self::check_creator(conn, t, creator, limits).await?;
        }
        Self::check_live_limit(conn, t.environment, t.created_at, limits.max_live, None).await?;
        Self::insert_row(conn, stored, limits.max_total).await?;
        Self::append_events(conn, &[EventBatch::issue(t)]).await
    }

    /// Revokes the token and, in the same transaction, what goes with it (see
    /// [`REVOKE_CASCADE`](Self::REVOKE_CASCADE)); the token as revoked, if the environment
    /// has it. A token revoked already is returned as it is, and nothing else changes.
    /// Runs inside the caller's write transaction, under the environment's lock.
    async fn revoke_in(
        conn: &mut Conn<Self>,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Revoker<'_>,
    ) -> Result<Option<Revoked>, StoreError> {
        Self::lock_environment(conn, environment).await?;
        let revoked = sqlx::query::<Self::Db>(Self::REVOKE)
            .bind(Self::time(at))
            .bind(*environment.as_uuid())
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::err)?
            .map(Self::decode)
            .transpose()?;
        let Some(token) = revoked else {
            // Absent, or revoked by someone else since the caller looked.
            let found = Self::fetch_token(conn, environment, id).await?;
            return Ok(found.map(|token| Revoked {
                token,
                cascade: Vec::new(),
            }));
        };
        let cascade = sqlx::query_scalar::<Self::Db, Uuid>(Self::REVOKE_CASCADE)
            .bind(Self::time(at))
            .bind(*environment.as_uuid())
            .bind(*id.as_uuid())
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        let cascade: Vec<TokenId> = cascade.into_iter().map(TokenId::from_uuid).collect();
        let events = EventBatch::revocation(at, environment, by, &id, &cascade);
        Self::append_events(conn, &events).await?;
        Ok(Some(Revoked { token, cascade }))
    }

    /// Revokes each of `leaks` as [`revoke_in`](Self::revoke_in) does, for its report,
    /// inside the caller's write transaction. Every environment's lock is taken first, in
    /// one order, so that a transaction holding the event log's lock (taken by the first
    /// append) never waits for an environment's, and two batches never wait for each
    /// other's.
    async fn revoke_leaked_in(
        conn: &mut Conn<Self>,
        leaks: &[(EnvironmentId, TokenId, &LeakDetails)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Option<Revoked>>, StoreError> {
        let mut environments: Vec<EnvironmentId> = leaks.iter().map(|leak| leak.0).collect();
        environments.sort_unstable();
        environments.dedup();
        for environment in environments {
            Self::lock_environment(conn, environment).await?;
        }
        let mut revoked = Vec::with_capacity(leaks.len());
        for &(environment, id, leak) in leaks {
            revoked.push(Self::revoke_in(conn, environment, id, at, Revoker::Leak(leak)).await?);
        }
        Ok(revoked)
    }

    async fn fetch_token(
        conn: &mut Conn<Self>,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError> {
        sqlx::query::<Self::Db>(Self::SELECT_TOKEN)
            .bind(*environment.as_uuid())
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::err)?
            .map(Self::decode)
            .transpose()
    }

    /// See [`TokenStore::descends_from`](super::TokenStore::descends_from).
    async fn descends_from_in(
        conn: &mut Conn<Self>,
        environment: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar::<Self::Db, bool>(Self::DESCENDS_FROM)
            .bind(*environment.as_uuid())
            .bind(*id.as_uuid())
            .bind(*ancestor.as_uuid())
            .fetch_one(&mut *conn)
            .await
            .map_err(Self::err)
    }

    /// A page of a listing, as [`TokenStore::list`](super::TokenStore::list) reads it.
    async fn list_in(
        conn: &mut Conn<Self>,
        environment: EnvironmentId,
        page: PageRequest,
    ) -> Result<Vec<Token>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT);
        // A cursor before the earliest time the engine stores is the first page.
        let (after_time, after_id) = page
            .after
            .filter(|c| c.created_at >= Self::EARLIEST)
            .map_or((Self::EARLIEST, Uuid::nil()), |c| {
                (c.created_at, *c.id.as_uuid())
            });
        let query = match (page.live_at, page.created_by) {
            (None, None) => Self::LIST,
            (Some(_), None) => Self::LIST_LIVE,
            (None, Some(_)) => Self::LIST_CREATED_BY,
            (Some(_), Some(_)) => Self::LIST_LIVE_CREATED_BY,
        };
        let mut query = sqlx::query::<Self::Db>(query)
            .bind(*environment.as_uuid())
            .bind(Self::time(after_time))
            .bind(after_id);
        if let Some(at) = page.live_at {
            query = query.bind(Self::time(at));
        }
        if let Some(user) = page.created_by {
            query = query.bind(*user.as_uuid());
        }
        // One row more than asked tells whether another page follows.
        query = query.bind(i64::from(limit) + 1);
        // Bound last (numbered after the limit in the statements), with live ones only.
        if page.live_at.is_some() {
            query = query.bind(page.used_after.map(Self::time));
        }
        query
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?
            .into_iter()
            .map(Self::decode)
            .collect()
    }

    /// One batch of [`TokenStore::purge`](super::TokenStore::purge), inside the caller's
    /// write transaction: deletes, then counts the deleted tokens out of their
    /// environments (in a fixed order, so that concurrent purges never deadlock).
    async fn purge_in(
        conn: &mut Conn<Self>,
        ended_before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        let deleted = sqlx::query_scalar::<Self::Db, Uuid>(Self::PURGE)
            .bind(Self::time(ended_before))
            .bind(i64::from(max))
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        let mut per_environment = std::collections::BTreeMap::<Uuid, i64>::new();
        for environment in &deleted {
            *per_environment.entry(*environment).or_default() += 1;
        }
        for (environment, fewer) in per_environment {
            sqlx::query::<Self::Db>(Self::COUNT_FEWER)
                .bind(fewer)
                .bind(environment)
                .execute(&mut *conn)
                .await
                .map_err(Self::err)?;
        }
        Ok(u32::try_from(deleted.len()).unwrap_or(u32::MAX))
    }

    /// The predecessor of a rotation, and its successor if it has been rotated already.
    async fn fetch_predecessor(
        conn: &mut Conn<Self>,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<(Token, Option<TokenId>)>, StoreError> {
        let Some(row) = sqlx::query::<Self::Db>(Self::SELECT_PREDECESSOR)
            .bind(*environment.as_uuid())
            .bind(*id.as_uuid())
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::err)?
        else {
            return Ok(None);
        };
        let replaced_by: Option<Uuid> = row.try_get("replaced_by").map_err(Self::err)?;
        Ok(Some((
            Self::decode(row)?,
            replaced_by.map(TokenId::from_uuid),
        )))
    }

    /// A rotation's reads, checks and writes, inside the caller's write transaction:
    /// the predecessor's record as the rotation left it, and whether this call wrote it
    /// (`false`: with `retry`, an earlier attempt of this same rotation had, and nothing
    /// was written now).
    async fn rotate_in(
        conn: &mut Conn<Self>,
        rotation: &Rotation,
        retry: bool,
    ) -> Result<(Token, bool), StoreError> {
        let Rotation {
            environment,
            predecessor,
            predecessor_expires_at,
            ref successor,
            limits,
            actor,
        } = *rotation;
        let now = successor.token.created_at;
        let found = Self::fetch_predecessor(conn, environment, predecessor).await?;
        let resuming = retry.then_some(successor.token.id);
        let (old, done) = check_predecessor(
            environment,
            predecessor,
            &successor.token,
            found,
            Token::is_live_at,
            resuming,
        )?;
        if done {
            return Ok((old, false));
        }
        Self::check_live_limit(conn, environment, now, limits.max_live, Some(predecessor)).await?;
        Self::insert_row(conn, successor, limits.max_total).await?;
        let updated = sqlx::query::<Self::Db>(Self::MARK_ROTATED)
            .bind(Self::time(predecessor_expires_at))
            .bind(*environment.as_uuid())
            .bind(*predecessor.as_uuid())
            .bind(*successor.token.id.as_uuid())
            .fetch_one(&mut *conn)
            .await
            .map_err(Self::err)?;
        let events =
            EventBatch::rotation(now, environment, actor, &predecessor, &successor.token.id);
        Self::append_events(conn, &events).await?;
        Ok((Self::decode(updated)?, true))
    }

    async fn write_last_use<'c>(
        executor: impl Executor<'c, Database = Self::Db>,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let from = from.map(|ip| ip.to_string());
        sqlx::query::<Self::Db>(Self::RECORD_LAST_USE)
            .bind(Self::time(at))
            .bind(*id.as_uuid())
            .bind(from.as_deref())
            .execute(executor)
            .await
            .map_err(Self::err)?;
        Ok(())
    }

    async fn meta(conn: &mut Conn<Self>, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<Self::Db, String>(Self::SELECT_META)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::err)
    }

    async fn set_meta(conn: &mut Conn<Self>, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query::<Self::Db>(Self::UPSERT_META)
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await
            .map_err(Self::err)?;
        Ok(())
    }

    /// Creates or upgrades the schema, inside the caller's transaction (which holds
    /// whatever lock keeps two migrations apart).
    async fn migrate_in(conn: &mut Conn<Self>) -> Result<(), StoreError> {
        sqlx::raw_sql(Self::CREATE_META)
            .execute(&mut *conn)
            .await
            .map_err(Self::err)?;
        let version = Self::meta(conn, META_SCHEMA_VERSION).await?;
        for migration in pending(version, Self::MIGRATIONS)? {
            sqlx::raw_sql(*migration)
                .execute(&mut *conn)
                .await
                .map_err(Self::err)?;
        }
        let latest = Self::MIGRATIONS.len().to_string();
        Self::set_meta(conn, META_SCHEMA_VERSION, &latest).await
    }

    /// The recorded schema version, 0 if none (or unreadable) is.
    async fn recorded_version(conn: &mut Conn<Self>) -> Result<i64, StoreError> {
        let version = Self::meta(conn, META_SCHEMA_VERSION).await?;
        Ok(version.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// `version` if this library reads it, else [`StoreError::SchemaTooNew`].
    fn readable(version: i64) -> Result<i64, StoreError> {
        let supported = Self::MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported,
            });
        }
        Ok(version)
    }

    /// [`TokenStore::prepare_keyring`](super::TokenStore::prepare_keyring) inside the
    /// caller's write transaction: migrates, checks the ring against the keys the rows
    /// need, then records its current key among them (and as the bound key of a new
    /// database).
    async fn prepare_in(
        conn: &mut Conn<Self>,
        keys: &KeyringFingerprints,
    ) -> Result<(), StoreError> {
        Self::migrate_in(conn).await?;
        Self::check_keys_in(conn, Self::MIGRATIONS.len() as i64, keys).await?;
        let current = keys.current().to_string();
        if Self::meta(conn, META_HASH_KEY).await?.is_none() {
            Self::set_meta(conn, META_HASH_KEY, &current).await?;
        }
        sqlx::query::<Self::Db>(Self::ADD_HASH_KEY)
            .bind(current.as_str())
            .execute(&mut *conn)
            .await
            .map_err(Self::err)?;
        Ok(())
    }

    /// Fails when `keys` lacks a key the rows need, on a database at schema `version`:
    /// the keys of `apitoken_hash_keys` from the keyring's migration on, the bound key
    /// before it.
    async fn check_keys_in(
        conn: &mut Conn<Self>,
        version: i64,
        keys: &KeyringFingerprints,
    ) -> Result<(), StoreError> {
        if version < keyring_version(Self::MIGRATIONS) {
            return check_needed(Self::meta(conn, META_HASH_KEY).await?, keys);
        }
        let needed = sqlx::query_scalar::<Self::Db, String>(Self::SELECT_HASH_KEYS)
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        for key in needed {
            check_needed(Some(key), keys)?;
        }
        Ok(())
    }

    /// See [`TokenStore::rehash`](super::TokenStore::rehash), inside the caller's write
    /// transaction.
    async fn rehash_in(conn: &mut Conn<Self>, rehash: &Rehash) -> Result<bool, StoreError> {
        let environment = sqlx::query_scalar::<Self::Db, Uuid>(Self::REHASH)
            .bind(rehash.to.as_bytes().as_slice())
            .bind(rehash.key.to_string())
            .bind(*rehash.id.as_uuid())
            .bind(rehash.from.as_bytes().as_slice())
            .bind(Self::time(rehash.at))
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::err)?;
        let Some(environment) = environment else {
            return Ok(false);
        };
        let environment = EnvironmentId::from_uuid(environment);
        Self::append_events(
            conn,
            &[EventBatch::rehash(rehash.at, environment, &rehash.id)],
        )
        .await?;
        Ok(true)
    }

    /// See [`TokenStore::hash_key_usage`](super::TokenStore::hash_key_usage).
    async fn key_usage_in(
        conn: &mut Conn<Self>,
        at: DateTime<Utc>,
    ) -> Result<Vec<KeyUsage>, StoreError> {
        let rows = sqlx::query::<Self::Db>(Self::KEY_USAGE)
            .bind(Self::time(at))
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        let mut usage = Vec::with_capacity(rows.len() + 1);
        for row in rows {
            let key: Option<String> = row.try_get("hash_key").map_err(Self::err)?;
            let live: i64 = row.try_get("live").map_err(Self::err)?;
            let never_expiring: i64 = row.try_get("never_expiring").map_err(Self::err)?;
            usage.push(KeyUsage {
                key: parse_fingerprint(key, "apitoken_tokens.hash_key")?,
                live: u64::try_from(live).unwrap_or(0),
                never_expiring: u64::try_from(never_expiring).unwrap_or(0),
                latest_expiry: Self::read_time(&row, "latest_expiry")?,
            });
        }
        let recorded = sqlx::query_scalar::<Self::Db, String>(Self::SELECT_HASH_KEYS)
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        for key in recorded {
            let key = parse_fingerprint(Some(key), "apitoken_hash_keys.fingerprint")?;
            if !usage.iter().any(|u| u.key == key) {
                usage.push(KeyUsage {
                    key,
                    live: 0,
                    never_expiring: 0,
                    latest_expiry: None,
                });
            }
        }
        Ok(usage)
    }

    /// Revokes at most `max` of the tokens hashed with `key` live at `at` (each with its
    /// cascade, its own event `KeyRetired` by `by`), inside the caller's write
    /// transaction; returns every token revoked, `None` when none was left. Every
    /// environment's lock is taken first, in one order, as a leak report's revocation
    /// does.
    async fn revoke_under_key_in(
        conn: &mut Conn<Self>,
        key: KeyFingerprint,
        at: DateTime<Utc>,
        by: Actor,
        max: u32,
    ) -> Result<Option<Vec<TokenId>>, StoreError> {
        let rows = sqlx::query::<Self::Db>(Self::LIVE_UNDER_KEY)
            .bind(key.to_string())
            .bind(Self::time(at))
            .bind(i64::from(max))
            .fetch_all(&mut *conn)
            .await
            .map_err(Self::err)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let environment: Uuid = row.try_get("environment_id").map_err(Self::err)?;
            let id: Uuid = row.try_get("id").map_err(Self::err)?;
            found.push((
                EnvironmentId::from_uuid(environment),
                TokenId::from_uuid(id),
            ));
        }
        let mut environments: Vec<EnvironmentId> = found.iter().map(|f| f.0).collect();
        environments.sort_unstable();
        environments.dedup();
        for environment in environments {
            Self::lock_environment(conn, environment).await?;
        }
        let mut revoked = Vec::new();
        for (environment, id) in found {
            // A token revoked meanwhile by a cascade of this batch is returned as it is.
            if let Some(done) =
                Self::revoke_in(conn, environment, id, at, Revoker::KeyRetired(by)).await?
                && done.token.revoked_at.map(|t| t.timestamp_micros())
                    == Some(at.timestamp_micros())
                && !revoked.contains(&id)
            {
                revoked.push(id);
                revoked.extend(done.cascade);
            }
        }
        Ok(Some(revoked))
    }

    /// Forgets `key` as one the rows need, inside the caller's write transaction, unless
    /// tokens it hashed are live at `at` ([`StoreError::HashKeyInUse`]).
    async fn forget_key_in(
        conn: &mut Conn<Self>,
        key: KeyFingerprint,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let live = sqlx::query_scalar::<Self::Db, i64>(Self::COUNT_LIVE_UNDER_KEY)
            .bind(key.to_string())
            .bind(Self::time(at))
            .fetch_one(&mut *conn)
            .await
            .map_err(Self::err)?;
        if live > 0 {
            return Err(StoreError::HashKeyInUse {
                key,
                live: u64::try_from(live).unwrap_or(0),
            });
        }
        sqlx::query::<Self::Db>(Self::DELETE_HASH_KEY)
            .bind(key.to_string())
            .execute(&mut *conn)
            .await
            .map_err(Self::err)?;
        Ok(())
    }
}

/// How many tokens one transaction of a key's retirement revokes.
pub(crate) const RETIRED_PER_TRANSACTION: u32 = 100;

/// The schema version from which `apitoken_hash_keys` exists: the migration that creates
/// it, found by what it does rather than by number, since migrations merged from other
/// branches may come before it.
pub(crate) fn keyring_version(migrations: &[&str]) -> i64 {
    migrations
        .iter()
        .position(|m| m.contains("CREATE TABLE apitoken_hash_keys"))
        .map_or(i64::MAX, |i| i as i64 + 1)
}

/// A fingerprint read from `column`.
fn parse_fingerprint(text: Option<String>, column: &str) -> Result<KeyFingerprint, StoreError> {
    let text = text.unwrap_or_default();
    text.parse::<KeyFingerprint>()
        .map_err(|e| StoreError::Corrupt {
            message: format!("{column}: {e}"),
            source: None,
        })
}

/// Fails when the rows need the key `stored` (when there is one) and `keys` lacks it
/// (see [`super::check_needed`]).
pub(crate) fn check_needed(
    stored: Option<String>,
    keys: &KeyringFingerprints,
) -> Result<(), StoreError> {
    let Some(stored) = stored else {
        return Ok(());
    };
    let stored = stored
        .parse::<KeyFingerprint>()
        .map_err(|e| StoreError::Corrupt {
            message: format!("apitoken_meta.{META_HASH_KEY}: {e}"),
            source: None,
        })?;
    super::check_needed(stored, keys)
}

/// The columns every query returns, in this order, as a literal for `concat!`: the
/// queries are then `&'static str`, built at compile time rather than on every call.
macro_rules! token_columns {
    () => {
        "id, environment_id, checksum, created_by_id, created_by_alias, \
         created_by_first_name, created_by_last_name, created_by_email, created_at, active, \
         note, scopes, expires_at, last_used_at, revoked_at, created_by_token, \
         allowed_cidrs, last_used_ip"
    };
}
pub(crate) use token_columns;

/// How many hashes one query of `find_many_by_hash` reads on SQLite (its default limit
/// of bound parameters is 32,766; fewer keeps each statement small).
pub(crate) const HASHES_PER_QUERY: usize = 250;

/// Puts each found token back in the order of `hashes`: one entry per hash.
pub(crate) fn in_order(
    hashes: &[TokenHash],
    found: &std::collections::HashMap<[u8; 32], Token>,
) -> Vec<Option<Token>> {
    hashes
        .iter()
        .map(|hash| found.get(hash.as_bytes()).cloned())
        .collect()
}

/// The columns of an event, in this order, as a literal for `concat!`.
/// How many leaked tokens one transaction of `revoke_leaked_many` revokes: few commits for
/// a large report, and no lock held for long.
pub(crate) const LEAKS_PER_TRANSACTION: usize = 100;

macro_rules! event_columns {
    () => {
        "sequence, at, environment_id, token_id, kind, actor_kind, actor_id, other_id, \
         leak_reporter, leak_source, leak_url, leak_type"
    };
}
pub(crate) use event_columns;

/// `INSERT INTO apitoken_tokens (…) VALUES ` naming the columns in the order
/// [`SqlDialect::insert_row`] binds them, as a literal for `concat!`: each engine adds
/// its 20 placeholders.
macro_rules! insert_into_tokens {
    () => {
        "INSERT INTO apitoken_tokens (id, hash, environment_id, checksum, created_by_id, \
         created_by_alias, created_by_first_name, created_by_last_name, created_by_email, \
         created_at, active, note, scopes, expires_at, last_used_at, revoked_at, \
         created_by_token, hash_key, allowed_cidrs, last_used_ip) VALUES "
    };
}
pub(crate) use insert_into_tokens;

// A look-up by hash reads, copies and decodes one row whether or not a record has the
// hash: the record, or else a decoy of the same shape, which is then dropped. Otherwise a
// revoked or expired token's 401 cost what an unknown token's did plus a row read and
// decoded (about 28,000 instructions, 8-15 µs over HTTP), and someone holding an old token
// could tell it was once real (issue 12). Both branches probe the hash index twice; a
// `found` column comes first. The decoy looks like a typical record (a creator with an
// alias and an e-mail address, a 28-character note, three scopes, no expiry): a record
// with many more scopes or a longer note still costs a little more to decode (see
// BENCHMARKS.md, "The 401 answers in time").

/// The decoy's columns as SQLite literals, in `token_columns!` order (ids are 16-byte
/// blobs, times integer microseconds).
#[cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
macro_rules! sqlite_decoy_columns {
    () => {
        "X'0190a5c47d3e7b5a9c1d000000000000', X'0190a5c47d3e7b5a9c1d000000000001', '000000', \
         X'0190a5c47d3e7b5a9c1d000000000002', 'decoy', NULL, NULL, 'decoy@example.invalid', \
         1767225600000000, 1, 'decoy, read on a look-up miss', \
         'environment.apiTokens.read environment.apiTokens.write environment.users.read', \
         NULL, NULL, NULL, NULL, NULL, NULL"
    };
}
#[cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
pub(crate) use sqlite_decoy_columns;

/// The decoy's columns as PostgreSQL literals, in `token_columns!` order.
#[cfg(feature = "postgres")]
macro_rules! postgres_decoy_columns {
    () => {
        "'0190a5c4-7d3e-7b5a-9c1d-000000000000'::uuid, \
         '0190a5c4-7d3e-7b5a-9c1d-000000000001'::uuid, '000000', \
         '0190a5c4-7d3e-7b5a-9c1d-000000000002'::uuid, 'decoy', NULL::text, NULL::text, \
         'decoy@example.invalid', '2026-01-01 00:00:00+00'::timestamptz, true, \
         'decoy, read on a look-up miss', \
         'environment.apiTokens.read environment.apiTokens.write environment.users.read', \
         NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::uuid, NULL::text, \
         NULL::text"
    };
}
#[cfg(feature = "postgres")]
pub(crate) use postgres_decoy_columns;

/// `SELECT found, token_columns… WHERE hash = <param>`, one row always: the record
/// (`found` true) or the decoy (`found` false). `$param` is the dialect's first
/// parameter, `$yes`/`$no` its truth values, `$decoy` its decoy columns, `$from` what the
/// decoy branch reads (`WHERE`, or a `FROM … WHERE … AND` clause: PostgreSQL reads a row of
/// `apitoken_meta` by its key, as a hit reads a row of `apitoken_tokens` by its index).
macro_rules! find_by_hash_or_decoy {
    ($param:literal, $yes:literal, $no:literal, $decoy:expr, $from:literal) => {
        concat!(
            "SELECT ",
            $yes,
            " AS found, ",
            $crate::store::sql::token_columns!(),
            " FROM apitoken_tokens WHERE hash = ",
            $param,
            " UNION ALL SELECT ",
            $no,
            ", ",
            $decoy,
            " ",
            $from,
            " NOT EXISTS (SELECT 1 FROM apitoken_tokens WHERE hash = ",
            $param,
            ")"
        )
    };
}
pub(crate) use find_by_hash_or_decoy;

/// `SELECT found, hash, token_columns…` of the record whose hash is any of `n` SQLite
/// parameters, or else the decoy (hash `X'00'`): one indexed query over every candidate
/// of a keyring, at least one row always, as `find_by_hash_or_decoy` reads one; the
/// second branch counts (every candidate probed, found or not, as in `PostgresStore`).
/// `None` for more candidates than a keyring makes.
#[cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
pub(crate) fn sqlite_any_hash_query(n: usize) -> Option<&'static str> {
    static QUERIES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (0..=1 + crate::hash::MAX_RETIRED_KEYS)
            .map(|n| {
                let params = (1..=n)
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "SELECT 1 AS found, hash, {columns} FROM apitoken_tokens \
                     WHERE hash IN ({params}) \
                     UNION ALL SELECT 0, X'00', {decoy} \
                     WHERE (SELECT count(*) FROM apitoken_tokens WHERE hash IN ({params})) = 0",
                    columns = token_columns!(),
                    decoy = sqlite_decoy_columns!(),
                )
            })
            .collect()
    });
    QUERIES.get(n).map(String::as_str).filter(|_| n > 0)
}

/// The first of `hashes` (by position) that `store` knows, one look-up each: for more
/// candidates than one query takes.
pub(crate) async fn first_found(
    store: &(impl super::TokenStore + ?Sized),
    hashes: &[TokenHash],
) -> Result<Option<(usize, Token)>, StoreError> {
    for (i, hash) in hashes.iter().enumerate() {
        if let Some(token) = store.find_by_hash(hash).await? {
            return Ok(Some((i, token)));
        }
    }
    Ok(None)
}

/// The schema version this library writes; see each store's `MIGRATIONS`.
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
pub(crate) const META_HASH_KEY: &str = "hash_key_fingerprint";

/// A record as read from a row, before validation.
pub(crate) struct TokenRow {
    pub(crate) id: Uuid,
    pub(crate) environment_id: Uuid,
    pub(crate) checksum: String,
    pub(crate) created_by_id: Uuid,
    pub(crate) created_by_alias: Option<String>,
    pub(crate) created_by_first_name: Option<String>,
    pub(crate) created_by_last_name: Option<String>,
    pub(crate) created_by_email: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) active: bool,
    pub(crate) note: String,
    pub(crate) scopes: String,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) last_used_at: Option<DateTime<Utc>>,
    pub(crate) revoked_at: Option<DateTime<Utc>>,
    pub(crate) created_by_token: Option<Uuid>,
    /// Space-separated ranges, as [`AllowedCidrs`] displays them.
    pub(crate) allowed_cidrs: Option<String>,
    pub(crate) last_used_ip: Option<String>,
}

impl TokenRow {
    /// Validates the row as the domain types do: a store never hands out a record that
    /// could not have been written.
    pub(crate) fn into_token(self) -> Result<Token, StoreError> {
        let corrupt = |what: &str, e: BoxError| StoreError::Corrupt {
            message: format!("token {}: invalid {what}", self.id),
            source: Some(e),
        };
        let checksum =
            Checksum::parse(&self.checksum).map_err(|e| corrupt("checksum", e.into()))?;
        let note = Note::from_stored(&self.note).map_err(|e| corrupt("note", e.into()))?;
        let scopes = self
            .scopes
            .split_ascii_whitespace()
            .map(Scope::new)
            .collect::<Result<Scopes, _>>()
            .map_err(|e| corrupt("scopes", e.into()))?;
        let allowed_cidrs = self
            .allowed_cidrs
            .as_deref()
            .map(AllowedCidrs::parse)
            .transpose()
            .map_err(|e| corrupt("allowed_cidrs", e.into()))?;
        let last_used_ip = self
            .last_used_ip
            .as_deref()
            .map(str::parse::<IpAddr>)
            .transpose()
            .map_err(|e| corrupt("last_used_ip", e.into()))?;
        Ok(Token {
            id: TokenId::from_uuid(self.id),
            checksum,
            created_by: Arc::new(Creator {
                id: UserId::from_uuid(self.created_by_id),
                alias: self.created_by_alias,
                first_name: self.created_by_first_name,
                last_name: self.created_by_last_name,
                email: self.created_by_email,
            }),
            created_at: self.created_at,
            active: self.active,
            note,
            environment: EnvironmentId::from_uuid(self.environment_id),
            scopes,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            last_used_ip,
            revoked_at: self.revoked_at,
            created_by_token: self.created_by_token.map(TokenId::from_uuid),
            allowed_cidrs,
        })
    }
}

/// Scopes as stored: space-separated (a scope never contains a space).
pub(crate) fn scopes_column(scopes: &Scopes) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which SQL engine an error comes from: their error codes differ.
#[derive(Clone, Copy)]
pub(crate) enum Engine {
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "sqlite-unbundled")),
        allow(dead_code)
    )]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// Maps a driver error to its semantic kind, keeping it as the source.
pub(crate) fn map_error(e: sqlx::Error, engine: Engine) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            // PostgreSQL names the constraint; SQLite names the column in the message.
            let name = db.constraint().unwrap_or(db.message());
            let key = if name.contains("hash") {
                UniqueKey::Hash
            } else {
                UniqueKey::Id
            };
            StoreError::Duplicate { key }
        }
        // SQLite's primary codes 11 (CORRUPT), 26 (NOTADB) and 13 (FULL).
        sqlx::Error::Database(db) if matches!(sqlite_code(&*db, engine), Some(11 | 26)) => {
            StoreError::Corrupt {
                message: format!(
                    "the database file is damaged or is not a SQLite database ({}): restore it from a backup, or salvage what is readable with `sqlite3 FILE .recover | sqlite3 NEW_FILE`",
                    db.message()
                ),
                source: Some(Box::new(sqlx::Error::Database(db))),
            }
        }
        sqlx::Error::Database(db) if sqlite_code(&*db, engine) == Some(13) => StoreError::Full {
            source: Box::new(sqlx::Error::Database(db)),
        },
        sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref(), engine) => {
            StoreError::Unavailable {
                source: Box::new(sqlx::Error::Database(db)),
            }
        }
        // sqlx's own TLS errors (TLS required and not offered, an unreadable root), and a
        // handshake rustls refused (it reaches us as an I/O error around rustls' error).
        sqlx::Error::Tls(_) => StoreError::Tls {
            source: Box::new(e),
        },
        #[cfg(feature = "postgres-tls")]
        sqlx::Error::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            StoreError::Tls {
                source: Box::new(sqlx::Error::Io(io)),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable {
            source: Box::new(e),
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt {
            message: "a row does not have the expected columns or types (is the schema migrated?)"
                .to_owned(),
            source: Some(Box::new(e)),
        },
        other => StoreError::Backend {
            source: Box::new(other),
        },
    }
}

/// SQLite's primary result code (the low byte of the extended code).
fn sqlite_code(db: &dyn sqlx::error::DatabaseError, engine: Engine) -> Option<u32> {
    match engine {
        Engine::Sqlite => db.code()?.parse::<u32>().ok().map(|c| c & 0xff),
        Engine::Postgres => None,
    }
}

/// Error codes that mean "try again later": PostgreSQL's connection exceptions (08…),
/// sessions its idle timeouts ended (57P05, 25P03), lock waits past `lock_timeout` (55P03),
/// shutdowns (57P01–57P03), too many connections (53300); SQLite's busy and locked
/// (after the busy timeout), I/O and cannot-open errors (primary codes 5, 6, 10, 14 in
/// the low byte of the extended code).
fn is_unavailable_code(code: Option<&str>, engine: Engine) -> bool {
    let Some(code) = code else {
        return false;
    };
    match engine {
        Engine::Postgres => {
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "57P05" | "25P03" | "55P03" | "53300"
                )
        }
        Engine::Sqlite => matches!(code.parse::<u32>().map(|c| c & 0xff), Ok(5 | 6 | 10 | 14)),
    }
}

/// The migrations still to run on a database at the recorded `version` (absent: none
/// has run), or why it cannot be migrated.
pub(crate) fn pending<'a>(
    version: Option<String>,
    migrations: &'a [&'a str],
) -> Result<&'a [&'a str], StoreError> {
    let found = version
        .map_or(Ok(0), |v| v.parse::<i64>())
        .map_err(|e| StoreError::Corrupt {
            message: "apitoken_meta.schema_version is not a number".to_owned(),
            source: Some(Box::new(e)),
        })?;
    usize::try_from(found)
        .ok()
        .and_then(|done| migrations.get(done..))
        .ok_or(StoreError::SchemaTooNew {
            found,
            supported: migrations.len() as i64,
        })
}

/// [`StoreError::NotPrepared`] unless schema version `found` is the newest of `migrations`
/// (a newer one is refused before this, as [`StoreError::SchemaTooNew`]).
pub(crate) fn prepared(found: i64, migrations: &[&str]) -> Result<(), StoreError> {
    let current = migrations.len() as i64;
    if found < current {
        return Err(StoreError::NotPrepared { found, current });
    }
    Ok(())
}
