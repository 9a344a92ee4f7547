//! [`PostgresStore`]: tokens in PostgreSQL (feature `postgres`).
//!
//! # Atomicity
//!
//! Checks that must be atomic with a write (the live-token limit, rotation) take a
//! transaction-scoped advisory lock on the environment, so concurrent issuers on any
//! number of connections and processes serialize per environment. Rotation also locks the
//! predecessor's row (`FOR UPDATE`) before checking that it is live and not yet rotated,
//! so a second rotation of the same token waits for the first and then sees its mark.
//! Revocation is a single `UPDATE`, visible to every connection once it commits. Unique
//! indexes on the id and the hash reject duplicates however requests race.
//!
//! # Schema
//!
//! `apitoken_meta` (schema version, hash key fingerprint), `apitoken_tokens` (`uuid` ids,
//! the 32-byte `bytea` hash with a unique index, `timestamptz` times at microsecond
//! precision, `replaced_by`, the successor's id once the token has been rotated, and
//! `created_by_token`), and `apitoken_environments` (how many tokens each environment
//! holds, which the cap reads). Indexes serve each bounded statement with a range: listing
//! `(environment_id, created_at, id)`, live tokens only, one user's; the revocation's
//! walk along `created_by_token` and `replaced_by`; purging by the time a token ended.
//! [`prepare`](TokenStore::prepare) creates or upgrades it under an advisory lock, so
//! several processes can start at once. Tables are created in the connection's
//! `search_path` schema; pick one with `?options=-c%20search_path%3Dmyschema` in the URL
//! or [`PgConnectOptions::options`].
//!
//! # Failures
//!
//! When the server cannot be reached, operations fail after the pool's acquire timeout
//! (5 s by default) with [`StoreError::Unavailable`], and the store recovers by itself
//! when the server is back. The pool tests a connection when it is released, not again
//! before each use (that would cost a round trip per operation), so it can hand out a
//! connection that died while idle: the network or a proxy dropped it (its first
//! statement fails with an I/O error), or the server ended the session, which it
//! announces with an error before closing (`pg_terminate_backend` or a restart: 57P01,
//! 57P02, 57P03; `idle_session_timeout`: 57P05; `idle_in_transaction_session_timeout`
//! on a transaction of ours that stalled: 25P03). Either way the operation is retried on
//! another connection, so callers do not see it, and the dead connection is closed when
//! released, never handed out again. Every operation is safe to run again: reads;
//! revoking and recording a last use, which change nothing the second time; and
//! inserting a token (with or without a live-token limit) or rotating, whose retry, if
//! the server had done the first attempt and only its answer was lost (even the
//! commit's), finds what that attempt wrote (this token's row; this successor recorded on
//! the predecessor) and succeeds, once. So a lost answer turns into neither an error nor
//! a duplicate. If the server stays unreachable through the retries, the operation fails
//! with `Unavailable`; when that happened at a commit, the change may have been made:
//! read the token back.
//!
//! A client that stalls inside a transaction (a paused process, a network cut without a
//! reset) while it holds an environment's lock blocks that environment's limit checks
//! and rotations for a bounded time only (see [`PostgresTimeouts`]): a waiter fails after
//! `lock_timeout` (5 s by default) with `Unavailable`, once, not retried; the server ends
//! the stalled transaction after `idle_in_transaction_session_timeout` (10 s by default)
//! of silence, which frees the lock.
//!
//! # The event log and its feed
//!
//! Every change appends its events in its own transaction, as its last statement:
//! `apitoken_event_log`'s one row hands out the sequence numbers and stays locked until
//! the transaction ends, so events commit in sequence order (a reader that goes on "after
//! the last one seen" cannot skip one that commits late), at the cost of serializing the
//! end of every write, which holds the lock for the append and the commit. The same
//! transaction sends `NOTIFY apitoken_events`, delivered when it commits.
//!
//! [`watch`](TokenStore::watch)'s feed holds a connection of its own that `LISTEN`s; a
//! notification only wakes it, and it then reads the log from its cursor, as it also does
//! every poll interval whatever arrives (500 ms, half a coherent cache's default staleness
//! bound; [`PostgresStore::feed_poll_interval`]). When that connection breaks, the feed reports [`FeedMessage::Interrupted`], connects and
//! `LISTEN`s again, then reads what it missed. What breaks it: a pooler in transaction
//! mode (PgBouncer's `pool_mode = transaction` drops `LISTEN`; give the feed a direct or
//! session-mode URL), a read replica (`LISTEN` fails there; the feed then only polls and
//! reports each failure), and the server's notification queue (8 GB) filling while a
//! listener does not read, after which `NOTIFY` fails and with it every write: each feed
//! reads its notifications as they come.
//!
//! [`FeedMessage::Interrupted`]: crate::FeedMessage::Interrupted
//!
//! Errors the server sends read as its message and SQLSTATE (`relation "x" does not
//! exist (SQLSTATE 42P01)`); the driver's error, with every field the server sent, is the
//! error's [`source`](std::error::Error::source).

use super::sql::{self, Engine, SqlDialect, event_columns, insert_into_tokens, token_columns};
use super::{
    BoxError, KeyUsage, Limits, Page, PageRequest, Rehash, Retired, Revoked, Rotation, StoreError,
    TokenStore,
};
use crate::event::{
    Actor, ChangeFeed, EventBatch, EventCursor, EventPage, FeedSource, LeakDetails, Revoker,
};
use crate::hash::{KeyFingerprint, KeyringFingerprints, TokenHash};
use crate::model::{EnvironmentId, StoredToken, Token, TokenId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use core::time::Duration;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, Row};
use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

/// Schema migrations, applied in order; the schema version is how many have run. Never
/// edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the tokens.
    "
CREATE TABLE apitoken_tokens (
    id uuid NOT NULL,
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    environment_id uuid NOT NULL,
    checksum text NOT NULL,
    created_by_id uuid NOT NULL,
    created_by_alias text,
    created_by_first_name text,
    created_by_last_name text,
    created_by_email text,
    created_at timestamptz NOT NULL,
    active boolean NOT NULL,
    note text NOT NULL,
    scopes text NOT NULL,
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT apitoken_tokens_id_key PRIMARY KEY (id),
    CONSTRAINT apitoken_tokens_hash_key UNIQUE (hash)
);
CREATE INDEX apitoken_tokens_environment_id ON apitoken_tokens (environment_id, id);
CREATE INDEX apitoken_tokens_environment_created ON apitoken_tokens (environment_id, created_at, id);
",
    // 2: the successor of a rotated token, so that a token is rotated at most once. NULL
    // (never rotated) for every existing row; adding a nullable column without a default
    // rewrites no row.
    "
ALTER TABLE apitoken_tokens ADD COLUMN replaced_by uuid;
",
    // 3: the token that created a token (delegation), NULL for every existing row (a user
    // created it); indexed both ways a revocation walks.
    "
ALTER TABLE apitoken_tokens ADD COLUMN created_by_token uuid;
CREATE INDEX apitoken_tokens_created_by_token ON apitoken_tokens (created_by_token)
    WHERE created_by_token IS NOT NULL;
CREATE INDEX apitoken_tokens_replaced_by ON apitoken_tokens (replaced_by)
    WHERE replaced_by IS NOT NULL;
",
    // 4: bounded work. The count of each environment's tokens (the per-environment cap is
    // one read, not a count); an index for listing live tokens, one for listing a user's,
    // one for purging by the time a token ended. A revocation rewrites each token it
    // revokes with an entry in every index (no update that changes `active` is HOT), so
    // the index on (environment_id, id) goes (the primary key finds a token by id) and the
    // index of creating tokens keeps only unrevoked tokens, all that the walk, the
    // breadth bound and purging read. A successor revoked before version 4 left its predecessor
    // working for the rest of its grace period: revoke such predecessors as version 4
    // would have, with their successor.
    "
CREATE TABLE apitoken_environments (
    environment_id uuid NOT NULL PRIMARY KEY,
    tokens bigint NOT NULL
);
INSERT INTO apitoken_environments (environment_id, tokens)
    SELECT environment_id, count(*) FROM apitoken_tokens GROUP BY environment_id;
CREATE INDEX apitoken_tokens_live ON apitoken_tokens (environment_id, created_at, id)
    WHERE active;
CREATE INDEX apitoken_tokens_created_by ON apitoken_tokens
    (environment_id, created_by_id, created_at, id);
DROP INDEX apitoken_tokens_environment_id;
DROP INDEX apitoken_tokens_created_by_token;
CREATE INDEX apitoken_tokens_created_by_live ON apitoken_tokens (created_by_token)
    WHERE created_by_token IS NOT NULL AND active;
CREATE INDEX apitoken_tokens_ended ON apitoken_tokens ((coalesce(revoked_at, expires_at)));
UPDATE apitoken_tokens AS p
    SET active = false, revoked_at = s.revoked_at
    FROM apitoken_tokens AS s
    WHERE s.id = p.replaced_by AND NOT s.active AND s.revoked_at IS NOT NULL
    AND p.active AND (p.expires_at IS NULL OR p.expires_at > now());
",
    // 5: the event log (see `TokenStore::events_since`). `apitoken_event_log` is one row:
    // the last sequence number given, whose row lock serializes appends so that they
    // commit in sequence order, and how far the log was pruned.
    "
CREATE TABLE apitoken_events (
    sequence bigint NOT NULL PRIMARY KEY,
    at timestamptz NOT NULL,
    environment_id uuid NOT NULL,
    token_id uuid NOT NULL,
    kind text NOT NULL,
    actor_kind text NOT NULL,
    actor_id uuid NOT NULL,
    other_id uuid
);
CREATE INDEX apitoken_events_environment ON apitoken_events (environment_id, sequence);
CREATE INDEX apitoken_events_at ON apitoken_events (at);
CREATE TABLE apitoken_event_log (
    one boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
    last_sequence bigint NOT NULL,
    pruned_through bigint NOT NULL
);
INSERT INTO apitoken_event_log (one, last_sequence, pruned_through) VALUES (true, 0, 0);
",
    // 6: what is known of a leak, kept with its event (`Leaked`): the reporter, and the
    // reporter's data (source, URL, type), which is forgotten after the leak retention;
    // the partial index finds what is left to forget.
    "
ALTER TABLE apitoken_events ADD COLUMN leak_reporter text;
ALTER TABLE apitoken_events ADD COLUMN leak_source text;
ALTER TABLE apitoken_events ADD COLUMN leak_url text;
ALTER TABLE apitoken_events ADD COLUMN leak_type text;
CREATE INDEX apitoken_events_leak_details ON apitoken_events (at, sequence)
    WHERE leak_source IS NOT NULL OR leak_url IS NOT NULL OR leak_type IS NOT NULL;
",
    // 7: revocation without rewriting indexes. An update that changes no indexed column
    // (a partial index's predicate counts) and finds room on its page is HOT: PostgreSQL
    // writes the new row version beside the old one and no index entry. `active` and
    // `revoked_at` were in three indexes, so revoking 3,000 tokens wrote 3,000 entries in
    // each of the table's indexes (`benches/bounded.rs`: about 60 of the 70 to 150 ms).
    // Those three go: the walk reads an index of creating tokens that ignores `active`;
    // live tokens are listed and counted from the environment's index (a revoked token
    // costs one skipped row there until it is purged); purging finds revoked tokens in
    // `apitoken_revocations`, one narrow row per revocation, and expired ones by expiry.
    // Pages written from now on keep a fifth free for those updates (and for last-use
    // writes, which were already HOT where a page had room): enough where a tree's tokens
    // were created over time among others'; where one page holds nothing but tokens
    // revoked together, the ones that find no room are written as before.
    "
ALTER TABLE apitoken_tokens SET (fillfactor = 80);
CREATE TABLE apitoken_revocations (
    revoked_at timestamptz NOT NULL,
    token_id uuid NOT NULL,
    PRIMARY KEY (revoked_at, token_id)
);
INSERT INTO apitoken_revocations (revoked_at, token_id)
    SELECT revoked_at, id FROM apitoken_tokens WHERE NOT active AND revoked_at IS NOT NULL;
CREATE INDEX apitoken_tokens_created_by_token ON apitoken_tokens (created_by_token)
    WHERE created_by_token IS NOT NULL;
CREATE INDEX apitoken_tokens_expires ON apitoken_tokens (expires_at)
    WHERE expires_at IS NOT NULL;
DROP INDEX apitoken_tokens_live;
DROP INDEX apitoken_tokens_created_by_live;
DROP INDEX apitoken_tokens_ended;
",
    // 8: the keyring. Which key made each row's hash, and the set of keys the rows need,
    // which `prepare` checks a keyring against (see `TokenStore::prepare_keyring`).
    // Existing rows are the bound key's: the column is added with that key as its default,
    // which PostgreSQL records once instead of rewriting every row, and the default is
    // then dropped (every insert names its key), keeping the value of the rows that were
    // there.
    "
DO $$
BEGIN
    EXECUTE format(
        'ALTER TABLE apitoken_tokens ADD COLUMN hash_key text NOT NULL DEFAULT %L',
        coalesce((SELECT value FROM apitoken_meta WHERE key = 'hash_key_fingerprint'),
                 'unkeyed'));
END
$$;
ALTER TABLE apitoken_tokens ALTER COLUMN hash_key DROP DEFAULT;
CREATE TABLE apitoken_hash_keys (fingerprint text NOT NULL PRIMARY KEY);
INSERT INTO apitoken_hash_keys (fingerprint)
    SELECT value FROM apitoken_meta WHERE key = 'hash_key_fingerprint';
",
    // 9: the client addresses a token authenticates from,
    // space-separated ranges (NULL: any), and the address of its last use, kept with
    // `last_used_at`. Text, as the library writes and reads them (no query compares
    // them); neither is indexed, so a last-use write stays HOT. NULL for every existing
    // row: no list, no address known.
    "
ALTER TABLE apitoken_tokens ADD COLUMN allowed_cidrs text;
ALTER TABLE apitoken_tokens ADD COLUMN last_used_ip text;
",
];

/// PostgreSQL's statements.
///
/// A statement that finds tokens by id, by creating token or by successor compares the
/// environment with `IS NOT DISTINCT FROM` (the same test on a column that is never NULL),
/// which no index serves: the planner then reads the primary key or the walk's own index.
/// With `=` it may read an index that starts with the environment instead, and it does for
/// an environment newer than the table's statistics, which it takes for one of a few rows:
/// every look-up then read all of that environment's tokens (`benches/bounded.rs` revoking
/// 3,000 tokens took 7.1 s where it takes 0.1 s). A token's creator and its successor are
/// in its environment (the store checks both when it inserts), so the walks need the test
/// only as a guard.
struct PostgresSql;

impl SqlDialect for PostgresSql {
    type Db = Postgres;
    type Time = DateTime<Utc>;

    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;
    const CREATE_META: &'static str = "CREATE TABLE IF NOT EXISTS apitoken_meta (key text NOT NULL PRIMARY KEY, value text NOT NULL)";
    const SELECT_META: &'static str = "SELECT value FROM apitoken_meta WHERE key = $1";
    const UPSERT_META: &'static str = "INSERT INTO apitoken_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    // A record inserted revoked (an import) goes into `apitoken_revocations` too.
    const INSERT: &'static str = concat!(
        "WITH t AS (",
        insert_into_tokens!(),
        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         RETURNING id, active, revoked_at) \
         INSERT INTO apitoken_revocations (revoked_at, token_id) \
         SELECT revoked_at, id FROM t WHERE NOT active AND revoked_at IS NOT NULL"
    );
    const COUNT_ONE_MORE: &'static str = "INSERT INTO apitoken_environments (environment_id, tokens) \
         VALUES ($1, 1) ON CONFLICT (environment_id) \
         DO UPDATE SET tokens = apitoken_environments.tokens + 1 RETURNING tokens";
    const COUNT_FEWER: &'static str =
        "UPDATE apitoken_environments SET tokens = tokens - $1 WHERE environment_id = $2";
    const COUNT_LIVE: &'static str = "SELECT count(*) FROM apitoken_tokens WHERE environment_id = $1 AND active \
         AND (expires_at IS NULL OR expires_at > $2) AND id IS DISTINCT FROM $3";
    const COUNT_CREATED_BY: &'static str = "SELECT count(*) FROM apitoken_tokens \
         WHERE created_by_token = $1 AND environment_id IS NOT DISTINCT FROM $2 AND active \
         AND (expires_at IS NULL OR expires_at > $3)";
    const DEPTH: &'static str = "WITH RECURSIVE up(id, depth) AS ( \
         SELECT created_by_token, 1::bigint FROM apitoken_tokens \
         WHERE id = $2 AND environment_id IS NOT DISTINCT FROM $1 AND created_by_token IS NOT NULL \
         UNION ALL SELECT t.created_by_token, up.depth + 1 FROM up \
         JOIN apitoken_tokens t ON t.id = up.id \
         WHERE t.environment_id IS NOT DISTINCT FROM $1 AND t.created_by_token IS NOT NULL \
         AND up.depth <= $3) \
         SELECT coalesce(max(depth), 0)::bigint FROM up";
    const SELECT_TOKEN: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens WHERE id = $2 AND environment_id IS NOT DISTINCT FROM $1"
    );
    // Locked until the transaction ends: a concurrent rotation of the same token waits,
    // then sees this one's outcome.
    const SELECT_PREDECESSOR: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        ", replaced_by FROM apitoken_tokens \
         WHERE id = $2 AND environment_id IS NOT DISTINCT FROM $1 FOR UPDATE"
    );
    // Each revocation also writes its row of `apitoken_revocations`, which purging reads.
    const REVOKE: &'static str = concat!(
        "WITH r AS (UPDATE apitoken_tokens SET active = false, \
         revoked_at = coalesce(revoked_at, $1) \
         WHERE id = $3 AND environment_id IS NOT DISTINCT FROM $2 AND active RETURNING ",
        token_columns!(),
        "), noted AS (INSERT INTO apitoken_revocations (revoked_at, token_id) \
         SELECT revoked_at, id FROM r) SELECT * FROM r"
    );
    // PostgreSQL takes one recursive term: a lateral pair of index look-ups, one per
    // branch (an `OR` in the join would read neither index).
    const REVOKE_CASCADE: &'static str = "WITH RECURSIVE tree(id) AS ( \
         SELECT $3::uuid \
         UNION SELECT n.id FROM tree CROSS JOIN LATERAL ( \
             SELECT c.id FROM apitoken_tokens c \
             WHERE c.created_by_token = tree.id AND c.environment_id IS NOT DISTINCT FROM $2 \
             AND c.active \
             AND (c.expires_at IS NULL OR c.expires_at > $1) \
             UNION ALL SELECT p.id FROM apitoken_tokens p \
             WHERE p.replaced_by = tree.id AND p.environment_id IS NOT DISTINCT FROM $2) n) \
         , r AS (UPDATE apitoken_tokens SET active = false, revoked_at = $1 \
         WHERE id = ANY(ARRAY(SELECT id FROM tree)) AND id <> $3 \
         AND active AND (expires_at IS NULL OR expires_at > $1) RETURNING id), \
         noted AS (INSERT INTO apitoken_revocations (revoked_at, token_id) \
         SELECT $1, id FROM r) SELECT id FROM r";
    const DESCENDS_FROM: &'static str = "WITH RECURSIVE up(id) AS ( \
         SELECT id FROM apitoken_tokens WHERE id = $2 AND environment_id IS NOT DISTINCT FROM $1 \
         UNION SELECT n.id FROM up JOIN apitoken_tokens t ON t.id = up.id \
         AND t.environment_id IS NOT DISTINCT FROM $1 \
         CROSS JOIN LATERAL (VALUES (t.created_by_token), (t.replaced_by)) n(id) \
         WHERE n.id IS NOT NULL) \
         SELECT EXISTS (SELECT 1 FROM up WHERE id = $3)";
    // Revoked tokens come from `apitoken_revocations`, expired ones from the index of
    // expiries (a token that ended both ways counts by its revocation, as
    // `coalesce(revoked_at, expires_at)` did), and their revocation rows go with them.
    const PURGE: &'static str = "WITH gone AS (DELETE FROM apitoken_tokens WHERE id IN ( \
         SELECT e.id FROM ( \
             SELECT r.token_id AS id FROM apitoken_revocations r WHERE r.revoked_at < $1 \
             UNION SELECT t.id FROM apitoken_tokens t WHERE t.expires_at < $1 \
             AND (t.revoked_at IS NULL OR t.revoked_at < $1)) e \
         WHERE NOT EXISTS (SELECT 1 FROM apitoken_tokens c WHERE c.created_by_token = e.id \
         AND c.active) \
         LIMIT $2) RETURNING id, environment_id, revoked_at), \
         forgotten AS (DELETE FROM apitoken_revocations r USING gone \
         WHERE r.revoked_at = gone.revoked_at AND r.token_id = gone.id) \
         SELECT environment_id FROM gone";
    const LIST: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens WHERE environment_id = $1 AND (created_at, id) > ($2, $3) \
         ORDER BY created_at, id LIMIT $4"
    );
    const LIST_LIVE: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens WHERE environment_id = $1 AND (created_at, id) > ($2, $3) \
         AND active AND (expires_at IS NULL OR expires_at > $4) \
         AND ($6::timestamptz IS NULL OR coalesce(last_used_at, created_at) > $6) \
         ORDER BY created_at, id LIMIT $5"
    );
    const LIST_CREATED_BY: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens WHERE environment_id = $1 AND created_by_id = $4 \
         AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $5"
    );
    const LIST_LIVE_CREATED_BY: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens WHERE environment_id = $1 AND created_by_id = $5 \
         AND (created_at, id) > ($2, $3) AND active AND (expires_at IS NULL OR expires_at > $4) \
         AND ($7::timestamptz IS NULL OR coalesce(last_used_at, created_at) > $7) \
         ORDER BY created_at, id LIMIT $6"
    );
    const RECORD_LAST_USE: &'static str = "UPDATE apitoken_tokens \
         SET last_used_at = $1, last_used_ip = $3 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)";
    const MARK_ROTATED: &'static str = concat!(
        "UPDATE apitoken_tokens SET expires_at = least(coalesce(expires_at, $1), $1), \
         replaced_by = $4 WHERE id = $3 AND environment_id IS NOT DISTINCT FROM $2 RETURNING ",
        token_columns!()
    );
    const SELECT_EVENTS: &'static str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM apitoken_events WHERE sequence > $1 ORDER BY sequence LIMIT $2"
    );
    const SELECT_ENVIRONMENT_EVENTS: &'static str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM apitoken_events WHERE environment_id = $1 AND sequence > $2 \
         ORDER BY sequence LIMIT $3"
    );
    const SELECT_EVENT_LOG: &'static str =
        "SELECT last_sequence, pruned_through FROM apitoken_event_log";
    const PRUNE_EVENTS: &'static str = "DELETE FROM apitoken_events WHERE sequence IN ( \
         SELECT sequence FROM apitoken_events WHERE at < $1 ORDER BY sequence LIMIT $2) \
         RETURNING sequence";
    const FORGET_LEAK_DETAILS: &'static str = "UPDATE apitoken_events \
         SET leak_source = NULL, leak_url = NULL, leak_type = NULL WHERE sequence IN ( \
         SELECT sequence FROM apitoken_events WHERE at < $1 AND (leak_source IS NOT NULL \
         OR leak_url IS NOT NULL OR leak_type IS NOT NULL) ORDER BY at, sequence LIMIT $2) \
         RETURNING sequence";
    const MARK_PRUNED: &'static str = "UPDATE apitoken_event_log \
         SET pruned_through = greatest(pruned_through, $1)";
    const REHASH: &'static str = "UPDATE apitoken_tokens SET hash = $1, hash_key = $2 \
         WHERE id = $3 AND hash = $4 AND active AND (expires_at IS NULL OR expires_at > $5) \
         RETURNING environment_id";
    const KEY_USAGE: &'static str = "SELECT hash_key, count(*) AS live, \
         count(*) FILTER (WHERE expires_at IS NULL) AS never_expiring, \
         max(expires_at) AS latest_expiry \
         FROM apitoken_tokens WHERE active AND (expires_at IS NULL OR expires_at > $1) \
         GROUP BY hash_key";
    const SELECT_HASH_KEYS: &'static str = "SELECT fingerprint FROM apitoken_hash_keys";
    const ADD_HASH_KEY: &'static str =
        "INSERT INTO apitoken_hash_keys (fingerprint) VALUES ($1) ON CONFLICT DO NOTHING";
    const DELETE_HASH_KEY: &'static str = "DELETE FROM apitoken_hash_keys WHERE fingerprint = $1";
    const LIVE_UNDER_KEY: &'static str = "SELECT environment_id, id FROM apitoken_tokens \
         WHERE hash_key = $1 AND active AND (expires_at IS NULL OR expires_at > $2) LIMIT $3";
    const COUNT_LIVE_UNDER_KEY: &'static str = "SELECT count(*) FROM apitoken_tokens \
         WHERE hash_key = $1 AND active AND (expires_at IS NULL OR expires_at > $2)";
    // PostgreSQL's earliest `timestamptz`, 4714-11-24 BC (Julian day 0).
    const EARLIEST: DateTime<Utc> = match chrono::NaiveDate::from_ymd_opt(-4713, 11, 24) {
        Some(day) => day.and_time(chrono::NaiveTime::MIN).and_utc(),
        None => DateTime::<Utc>::MIN_UTC,
    };

    fn err(e: sqlx::Error) -> StoreError {
        err(e)
    }

    fn time(at: DateTime<Utc>) -> DateTime<Utc> {
        at
    }

    fn read_time(row: &PgRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        row.try_get(column).map_err(err)
    }

    fn read_created_at(row: &PgRow) -> Result<DateTime<Utc>, StoreError> {
        row.try_get("created_at").map_err(err)
    }

    /// One statement, one round trip: the numbers are taken, the events written and the
    /// notification queued together, so the log's lock is held from here to the commit.
    async fn append_batch(
        conn: &mut PgConnection,
        batch: &EventBatch<'_>,
    ) -> Result<(), StoreError> {
        let tokens: Vec<uuid::Uuid> = batch.tokens.iter().map(|t| *t.as_uuid()).collect();
        sqlx::query(concat!(
            "WITH reserved AS (UPDATE apitoken_event_log \
             SET last_sequence = last_sequence + cardinality($7::uuid[]) RETURNING last_sequence), \
             appended AS (INSERT INTO apitoken_events (",
            event_columns!(),
            ") SELECT r.last_sequence - cardinality($7::uuid[]) + e.n, $1, $2, e.t, $3, $4, $5, $6, \
             $9, $10, $11, $12 FROM reserved r, unnest($7::uuid[]) WITH ORDINALITY AS e(t, n)) \
             SELECT pg_notify($8, last_sequence::text) FROM reserved"
        ))
        .bind(batch.at)
        .bind(batch.environment.as_uuid())
        .bind(batch.kind.name())
        .bind(batch.actor.kind())
        .bind(batch.actor.id().unwrap_or_default())
        .bind(batch.kind.other().map(|t| *t.as_uuid()))
        .bind(tokens)
        .bind(EVENTS_CHANNEL)
        .bind(batch.leak.map(|leak| leak.reporter.name()))
        .bind(batch.leak.and_then(|leak| leak.source.as_deref()))
        .bind(batch.leak.and_then(|leak| leak.url.as_deref()))
        .bind(batch.leak.and_then(|leak| leak.token_type.as_deref()))
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        Ok(())
    }

    /// A transaction-scoped advisory lock on the environment, so concurrent issuers on
    /// any number of connections and processes serialize per environment.
    async fn lock_environment(
        conn: &mut PgConnection,
        environment: EnvironmentId,
    ) -> Result<(), StoreError> {
        let (hi, lo) = environment.as_uuid().as_u64_pair();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind((hi ^ lo) as i64)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// The channel appends notify and feeds listen on.
const EVENTS_CHANNEL: &str = "apitoken_events";

/// A feed's source: a `LISTEN`ing connection that wakes it, and the pool it reads with.
struct PostgresFeed {
    pool: PgPool,
    listener: Option<sqlx::postgres::PgListener>,
    poll: Duration,
}

#[async_trait]
impl FeedSource for PostgresFeed {
    async fn read(&mut self, after: EventCursor, limit: u32) -> Result<EventPage, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        PostgresSql::events_in(&mut conn, None, after, limit).await
    }

    async fn wait(&mut self) -> Result<(), StoreError> {
        let Some(listener) = self.listener.as_mut() else {
            // LISTEN first, then (on return) read what was missed. The connection is the
            // feed's own, outside the store's pool: closing the store must not wait for a
            // feed that nobody pulls.
            let own = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with((*self.pool.connect_options()).clone());
            let mut listener = sqlx::postgres::PgListener::connect_with(&own)
                .await
                .map_err(err)?;
            listener.eager_reconnect(false);
            listener.ignore_pool_close_event(false);
            listener.listen(EVENTS_CHANNEL).await.map_err(err)?;
            self.listener = Some(listener);
            return Ok(());
        };
        let notified = tokio::time::timeout(self.poll, listener.try_recv()).await;
        match notified {
            // The poll interval passed, or a notification came: read.
            Err(_) | Ok(Ok(Some(_))) => {
                // Notifications that came meanwhile are read by the same read.
                while listener.next_buffered().is_some() {}
                Ok(())
            }
            Ok(Ok(None)) => {
                self.listener = None;
                Err(StoreError::Unavailable {
                    source: "the connection that listens for events was lost".into(),
                })
            }
            Ok(Err(e)) => {
                self.listener = None;
                Err(err(e))
            }
        }
    }
}

/// The advisory lock key `prepare` takes (any fixed number; "apitoken" in ASCII).
const MIGRATION_LOCK: i64 = 0x6170_6974_6f6b_656e;

/// What `url` asks for, if it is a `postgres://` or `postgresql://` URL.
///
/// A URL without the `//` (`postgres:app:secret@db/app`) is refused with
/// [`StoreError::InvalidUrl`], which repeats none of it: the driver would read everything
/// after the colon as a database name, and the server's "database … does not exist" would
/// repeat the password.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !scheme
        .is_some_and(|s| s.eq_ignore_ascii_case("postgres") || s.eq_ignore_ascii_case("postgresql"))
    {
        return Err(StoreError::InvalidUrl {
            reason: "a PostgreSQL URL starts with `postgres://` or `postgresql://`, such as postgres://app@db.example:5432/app".to_owned(),
        });
    }
    // The driver's reasons name what is wrong (a port that is not a number, an unknown
    // `sslmode`), never the password.
    PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
        reason: format!("the PostgreSQL URL cannot be read: {e}"),
    })
}

fn err(e: sqlx::Error) -> StoreError {
    match sql::map_error(e, Engine::Postgres) {
        StoreError::Unavailable { source } => StoreError::Unavailable {
            source: server_error(source),
        },
        StoreError::Backend { source } => StoreError::Backend {
            source: server_error(source),
        },
        other => other,
    }
}

/// Wraps an error the server sent in a [`ServerError`], so that the message shows what
/// the server said rather than where in its C source it said it.
fn server_error(source: BoxError) -> BoxError {
    match source.downcast::<sqlx::Error>() {
        Ok(e) if matches!(*e, sqlx::Error::Database(_)) => Box::new(ServerError(*e)),
        Ok(e) => e,
        Err(other) => other,
    }
}

/// An error the server sent: its message and SQLSTATE (sqlx's own `Display` appends the
/// line of the server's C source that raised it, which means nothing to a reader). The
/// driver's whole error, with every field the server sent, is the `source`.
#[derive(Debug)]
struct ServerError(sqlx::Error);

impl ServerError {
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        match &self.0 {
            sqlx::Error::Database(db) => db.code(),
            _ => None,
        }
    }

    /// Whether the server ended the session: it sends the error, then closes the
    /// connection, so the connection is dead exactly as after an I/O error, and the
    /// operation is retried the same way. An administrator or a restart (57P01, 57P02), a
    /// server starting up or shutting down (57P03), `idle_session_timeout` (57P05) on a
    /// pooled connection, `idle_in_transaction_session_timeout` (25P03) on a transaction
    /// of ours that stalled (the server rolled it back).
    fn ended_session(&self) -> bool {
        matches!(
            self.code().as_deref(),
            Some("57P01" | "57P02" | "57P03" | "57P05" | "25P03")
        )
    }
}

impl core::fmt::Display for ServerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sqlx::Error::Database(db) = &self.0 else {
            return self.0.fmt(f);
        };
        let code = db.code().unwrap_or_default();
        if code == "55P03" {
            return write!(
                f,
                "waited longer than lock_timeout for a lock another transaction holds (an \
                 environment's, or a token's being rotated), perhaps one a client stalled in, \
                 which the server ends after idle_in_transaction_session_timeout; SQLSTATE 55P03"
            );
        }
        write!(f, "{} (SQLSTATE {code})", db.message())
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether `e` means that the connection was dead before the operation could do anything
/// on it: an I/O error (the pool handed out a connection broken while idle), or the
/// server having ended the session. Not a lock timeout: retrying that would multiply the
/// bound it sets.
fn broken_connection(e: &StoreError) -> bool {
    let StoreError::Unavailable { source } = e else {
        return false;
    };
    matches!(
        source.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Io(_))
    ) || source
        .downcast_ref::<ServerError>()
        .is_some_and(ServerError::ended_session)
}

/// Server-side bounds on how long one stalled client can hold up the others, set on every
/// connection of a [`PostgresStore`] (as the `lock_timeout` and
/// `idle_in_transaction_session_timeout` settings) when it is made.
///
/// A live-token limit check and a rotation hold their environment's lock until their
/// transaction ends. If the process holding it freezes (paused, swapping, cut off without a
/// reset), every other issuer of that environment would wait for as long as it stayed
/// frozen. With these bounds a waiter gives up after `lock` with
/// [`StoreError::Unavailable`] (retryable), and the server ends a transaction that sat
/// idle for `idle_in_transaction`, which frees the lock: so no issuer is blocked for longer
/// than about `idle_in_transaction` after the frozen client's last statement. The
/// defaults (5 s, 10 s) are far above what a healthy transaction here takes (a few round
/// trips) and below a client's usual request timeout. [`Duration::ZERO`] turns a bound
/// off, as in PostgreSQL.
///
/// ```
/// use apitoken::PostgresTimeouts;
/// use std::time::Duration;
///
/// let timeouts = PostgresTimeouts::default()
///     .lock(Duration::from_secs(2))
///     .idle_in_transaction(Duration::from_secs(5));
/// assert_ne!(timeouts, PostgresTimeouts::default());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresTimeouts {
    lock: Duration,
    idle_in_transaction: Duration,
}

impl Default for PostgresTimeouts {
    fn default() -> Self {
        PostgresTimeouts {
            lock: Duration::from_secs(5),
            idle_in_transaction: Duration::from_secs(10),
        }
    }
}

impl PostgresTimeouts {
    /// How long a statement waits for a lock before failing (`lock_timeout`).
    pub fn lock(self, lock: Duration) -> Self {
        PostgresTimeouts { lock, ..self }
    }

    /// How long a transaction may sit idle before the server ends its session
    /// (`idle_in_transaction_session_timeout`).
    pub fn idle_in_transaction(self, idle_in_transaction: Duration) -> Self {
        PostgresTimeouts {
            idle_in_transaction,
            ..self
        }
    }

    /// `options` with these settings as startup options: for a pool given to
    /// [`PostgresStore::from_pool`]. They come after any the options (or the URL's
    /// `options`) already have, so they take precedence.
    pub fn apply(&self, options: PgConnectOptions) -> PgConnectOptions {
        options.options([
            ("lock_timeout", millis(self.lock)),
            (
                "idle_in_transaction_session_timeout",
                millis(self.idle_in_transaction),
            ),
        ])
    }
}

/// A duration in PostgreSQL's unit for timeouts, whole milliseconds (rounded up, so that a
/// short bound is not turned off), at most its maximum.
fn millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128)
}

/// Token records in PostgreSQL.
///
/// ```no_run
/// # async fn run() -> Result<(), apitoken::Error> {
/// use apitoken::{PostgresStore, TokenIssuer};
///
/// let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
/// let issuer = TokenIssuer::builder(store).prepare().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    feed_poll: Duration,
}

impl PostgresStore {
    /// Connects with a URL (`postgres://user:password@host:port/database?…`), with a pool
    /// of up to 10 connections, a 5-second acquire timeout, and connections tested when
    /// released rather than before each use. A URL that does not start with `postgres://`
    /// or `postgresql://`, or that the driver cannot read, is refused with
    /// [`StoreError::InvalidUrl`], whose reason never repeats the password.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let options = connect_options(url)?;
        PostgresStore::connect_with(options, PostgresStore::pool_options()).await
    }

    /// The pool settings [`connect`](Self::connect) uses, to adjust.
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
    }

    /// Connects with explicit connection and pool options, and the default
    /// [`PostgresTimeouts`]. The first connection is made at once, so an unreachable
    /// server or a wrong password is reported here, with the driver's reason.
    pub async fn connect_with(
        options: PgConnectOptions,
        pool: PgPoolOptions,
    ) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with_timeouts(options, pool, PostgresTimeouts::default()).await
    }

    /// [`connect_with`](Self::connect_with), with other bounds on how long a stalled client
    /// can hold up the others.
    pub async fn connect_with_timeouts(
        options: PgConnectOptions,
        pool: PgPoolOptions,
        timeouts: PostgresTimeouts,
    ) -> Result<PostgresStore, StoreError> {
        // Named for pg_stat_activity, unless the application named its connections.
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("apitoken"),
        };
        let options = timeouts.apply(options);
        // One direct connection first: when the server is unreachable, this reports why
        // (refused, unknown host, bad password) at once, where the pool would only say
        // that it timed out.
        let probe = PgConnection::connect_with(&options).await.map_err(err)?;
        let _ = probe.close().await;
        Ok(PostgresStore::from_pool(
            pool.connect_with(options).await.map_err(err)?,
        ))
    }

    /// Uses an existing pool. Make its connections with [`PostgresTimeouts::apply`]: without
    /// it, one stalled client can block others for as long as it stays stalled.
    pub fn from_pool(pool: PgPool) -> PostgresStore {
        PostgresStore {
            pool,
            feed_poll: Duration::from_millis(500),
        }
    }

    /// How often a feed from [`watch`](TokenStore::watch) reads the log when no
    /// notification wakes it (default 500 ms): the longest an event can take to reach a
    /// feed whose notifications are lost without its knowing.
    pub fn feed_poll_interval(self, interval: Duration) -> PostgresStore {
        PostgresStore {
            feed_poll: interval,
            ..self
        }
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `statement`, again on another connection if it failed with an I/O error (a
    /// connection broken while idle), at most once per connection the pool may hold. Only
    /// for statements that are safe to run twice (see the module's "Failures").
    async fn retrying<T, F, Fut>(&self, mut statement: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<T, StoreError>>,
    {
        let mut retries = self.pool.options().get_max_connections();
        loop {
            match statement().await {
                Err(e) if retries > 0 && broken_connection(&e) => retries -= 1,
                result => return result,
            }
        }
    }

    /// A transaction holding the advisory lock that keeps schema changes (migrations, the
    /// hash key binding) apart.
    async fn begin_schema_change(
        &self,
    ) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        let mut tx = self
            .retrying(|| async { self.pool.begin().await.map_err(err) })
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        Ok(tx)
    }

    /// The schema version of the database (0 before the first migration).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('apitoken_meta') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        if !exists {
            return Ok(0);
        }
        PostgresSql::recorded_version(&mut conn).await
    }

    /// Checks, reading only, that the database holds an apitoken schema this version can
    /// read and was written with the hash key of this `fingerprint` (when one is
    /// recorded): for tools that must never write, such as a read-only command line.
    /// Returns the schema version, 0 when there are no apitoken tables; fails with
    /// [`StoreError::SchemaTooNew`] or [`StoreError::HashKeyMismatch`].
    pub async fn check_schema(&self, fingerprint: KeyFingerprint) -> Result<i64, StoreError> {
        self.check_schema_keyring(&KeyringFingerprints::single(fingerprint))
            .await
    }

    /// [`check_schema`](Self::check_schema) for a keyring: fails when the database holds
    /// tokens hashed with a key `keys` lacks ([`StoreError::KeyringLacksKey`], or
    /// [`StoreError::HashKeyMismatch`] for a ring of one key).
    pub async fn check_schema_keyring(
        &self,
        keys: &KeyringFingerprints,
    ) -> Result<i64, StoreError> {
        let version = PostgresSql::readable(self.schema_version().await?)?;
        if version > 0 {
            let mut conn = self.pool.acquire().await.map_err(err)?;
            PostgresSql::check_keys_in(&mut conn, version, keys).await?;
        }
        Ok(version)
    }
}

impl PostgresStore {
    /// One attempt at a rotation, in one transaction; `retry` when an earlier attempt's
    /// connection broke and it may have committed.
    async fn rotate_once(&self, rotation: &Rotation, retry: bool) -> Result<Token, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let (updated, written) = PostgresSql::rotate_in(&mut tx, rotation, retry).await?;
        if written {
            tx.commit().await.map_err(err)?;
        }
        Ok(updated)
    }

    /// One attempt at an insert, in one transaction.
    async fn insert_once(&self, stored: &StoredToken, limits: Limits) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        PostgresSql::insert_checked(&mut tx, stored, limits).await?;
        tx.commit().await.map_err(err)
    }

    /// One attempt at a revocation and its cascade, in one transaction.
    async fn revoke_once(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Revoker<'_>,
    ) -> Result<Option<Revoked>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let revoked = PostgresSql::revoke_in(&mut tx, environment, id, at, by).await?;
        tx.commit().await.map_err(err)?;
        Ok(revoked)
    }

    /// [`TokenStore::revoke`], by an actor or for a leak.
    async fn revoke_by(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Revoker<'_>,
    ) -> Result<Revoked, StoreError> {
        // A token revoked already costs one read, without the environment's lock: nothing
        // changes.
        let revoked = match self.get(environment, id).await? {
            None => None,
            Some(token) if !token.active => Some(Revoked {
                token,
                cascade: Vec::new(),
            }),
            // Idempotent, so retried whole when the connection breaks, even at the commit
            // (a retry after a lost commit finds it revoked, and reports no cascade).
            Some(_) => {
                self.retrying(|| self.revoke_once(environment, id, at, by))
                    .await?
            }
        };
        revoked.ok_or(StoreError::NotFound { environment, id })
    }

    /// One batch of a purge, in one transaction.
    async fn purge_once(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let purged = PostgresSql::purge_in(&mut tx, ended_before, max).await?;
        tx.commit().await.map_err(err)?;
        Ok(purged)
    }

    /// Whether the row with `stored`'s hash is `stored` itself (same id).
    async fn holds(&self, stored: &StoredToken) -> Result<bool, StoreError> {
        let same: Option<bool> = self
            .retrying(|| async {
                sqlx::query_scalar("SELECT id = $2 FROM apitoken_tokens WHERE hash = $1")
                    .bind(stored.hash.as_bytes().as_slice())
                    .bind(stored.token.id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)
            })
            .await?;
        Ok(same == Some(true))
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn insert(&self, token: StoredToken, limits: Limits) -> Result<(), StoreError> {
        // Retried whole when the connection breaks, even at the commit (the retry's count
        // and limit checks wait for the first attempt's transaction to end).
        let mut attempts = 0_u32;
        let inserted = self
            .retrying(|| {
                attempts += 1;
                self.insert_once(&token, limits)
            })
            .await;
        match inserted {
            // The connection broke after the server had run an earlier attempt, so the
            // retry met that attempt's row (or a count that includes it). It is this
            // token's (same id, same hash): the insert happened, once.
            Err(
                StoreError::Duplicate { .. }
                | StoreError::LimitReached { .. }
                | StoreError::EnvironmentFull { .. }
                | StoreError::TooManyDelegated { .. },
            ) if attempts > 1 && self.holds(&token).await? => Ok(()),
            other => other,
        }
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        // One row either way, decoded either way (see `sql`): a miss takes as long as a hit.
        let query = sql::find_by_hash_or_decoy!(
            "$1",
            "true",
            "false",
            sql::postgres_decoy_columns!(),
            "FROM apitoken_meta WHERE key = 'schema_version' AND"
        );
        let row = self
            .retrying(|| async {
                sqlx::query(query)
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)
            })
            .await?;
        // No row at all only if `apitoken_meta` lost its version row: still a miss.
        let Some(row) = row else { return Ok(None) };
        let found: bool = row.try_get("found").map_err(err)?;
        let token = PostgresSql::decode(row)?;
        Ok(found.then_some(token))
    }

    async fn find_many_by_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Vec<Option<Token>>, StoreError> {
        const QUERY: &str = concat!(
            "SELECT hash, ",
            token_columns!(),
            " FROM apitoken_tokens WHERE hash = ANY($1)"
        );
        let wanted: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
        let rows = self
            .retrying(|| async {
                sqlx::query(QUERY)
                    .bind(&wanted)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)
            })
            .await?;
        let mut found: HashMap<[u8; 32], Token> = HashMap::with_capacity(rows.len());
        for row in rows {
            let hash: Vec<u8> = row.try_get("hash").map_err(err)?;
            let token = PostgresSql::decode(row)?;
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                found.insert(hash, token);
            }
        }
        Ok(sql::in_order(hashes, &found))
    }

    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError> {
        self.retrying(|| async {
            let mut conn = self.pool.acquire().await.map_err(err)?;
            PostgresSql::fetch_token(&mut conn, environment, id).await
        })
        .await
    }

    async fn list(
        &self,
        environment: EnvironmentId,
        page: PageRequest,
    ) -> Result<Page, StoreError> {
        let tokens = self
            .retrying(|| async {
                let mut conn = self.pool.acquire().await.map_err(err)?;
                PostgresSql::list_in(&mut conn, environment, page).await
            })
            .await?;
        Ok(Page::from_overfetch(
            tokens,
            page.limit.clamp(1, PageRequest::MAX_LIMIT),
        ))
    }

    async fn revoke(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Actor,
    ) -> Result<Revoked, StoreError> {
        self.revoke_by(environment, id, at, Revoker::Actor(by))
            .await
    }

    async fn revoke_leaked(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        leak: &LeakDetails,
    ) -> Result<Revoked, StoreError> {
        self.revoke_by(environment, id, at, Revoker::Leak(leak))
            .await
    }

    async fn revoke_leaked_many(
        &self,
        leaks: &[(EnvironmentId, TokenId, &LeakDetails)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Option<Revoked>>, StoreError> {
        let mut all = Vec::with_capacity(leaks.len());
        for chunk in leaks.chunks(sql::LEAKS_PER_TRANSACTION) {
            // Idempotent, so retried whole when the connection breaks (a retry after a
            // lost commit finds them revoked, and reports no cascade).
            let revoked = self
                .retrying(|| async {
                    let mut tx = self.pool.begin().await.map_err(err)?;
                    let revoked = PostgresSql::revoke_leaked_in(&mut tx, chunk, at).await?;
                    tx.commit().await.map_err(err)?;
                    Ok(revoked)
                })
                .await?;
            all.extend(revoked);
        }
        Ok(all)
    }

    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
        // The whole transaction is retried when its connection breaks, even at the commit,
        // whose answer may have been lost after the server committed: the retry locks the
        // predecessor (waiting for the first attempt to end) and, finding this successor
        // already recorded, returns the predecessor as that attempt left it.
        let mut attempts = 0_u32;
        self.retrying(|| {
            attempts += 1;
            self.rotate_once(&rotation, attempts > 1)
        })
        .await
    }

    async fn descends_from(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError> {
        self.retrying(|| async {
            let mut conn = self.pool.acquire().await.map_err(err)?;
            PostgresSql::descends_from_in(&mut conn, environment, id, ancestor).await
        })
        .await
    }

    /// Retried whole when the connection breaks: a retry after a lost commit deletes the
    /// next batch, which a purge would delete anyway (the count then leaves out the lost
    /// one).
    async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        self.retrying(|| self.purge_once(ended_before, max)).await
    }

    /// Creates the schema, or upgrades it to the newest version, and binds the hash key,
    /// in one transaction under an advisory lock, so that several processes starting at
    /// once do it once. Fails with [`StoreError::Unavailable`] after waiting longer than
    /// the lock timeout for another process's migration or for the tables (run it again).
    async fn prepare(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        self.prepare_keyring(&KeyringFingerprints::single(key))
            .await
    }

    async fn check(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        self.check_keyring(&KeyringFingerprints::single(key)).await
    }

    /// As `prepare`, checking the keyring and recording its current key in the same
    /// transaction, under the same advisory lock.
    async fn prepare_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        let mut tx = self.begin_schema_change().await?;
        PostgresSql::prepare_in(&mut tx, keys).await?;
        tx.commit().await.map_err(err)
    }

    async fn check_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        let found = self.check_schema_keyring(keys).await?;
        sql::prepared(found, PostgresSql::MIGRATIONS)
    }

    async fn find_by_any_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Option<(usize, Token)>, StoreError> {
        if let [hash] = hashes {
            return Ok(self.find_by_hash(hash).await?.map(|token| (0, token)));
        }
        // One indexed query over every candidate, one row at least: the record, or the
        // decoy read as a miss (see `sql`), so a miss takes as long as a hit. Both
        // branches read `apitoken_meta`'s version row and probe the index for every
        // candidate (a count, where `NOT EXISTS` stops at the first found). Without that
        // a found token's 401 (revoked, expired) came 4-5 µs sooner than an unknown
        // token's with a ring of four (Welch t -3.2 to -3.6, cut at p90 -3.0 to -5.3, in
        // four runs of `server/benches/timing.rs`; with it |t| <= 1.9).
        const QUERY: &str = concat!(
            "SELECT true AS found, hash, ",
            token_columns!(),
            " FROM apitoken_tokens, apitoken_meta \
             WHERE hash = ANY($1) AND key = 'schema_version' \
             UNION ALL SELECT false, '\\x00'::bytea, ",
            sql::postgres_decoy_columns!(),
            " FROM apitoken_meta WHERE key = 'schema_version' AND \
             (SELECT count(*) FROM apitoken_tokens WHERE hash = ANY($1)) = 0"
        );
        let wanted: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
        let rows = self
            .retrying(|| async {
                sqlx::query(QUERY)
                    .bind(&wanted)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)
            })
            .await?;
        PostgresSql::first_of_candidates(rows, hashes, |token| token)
    }

    /// Retried whole when the connection breaks; a retry after a lost commit finds the
    /// new hash and answers `false`.
    async fn rehash(&self, rehash: &Rehash) -> Result<bool, StoreError> {
        self.retrying(|| async {
            let mut tx = self.pool.begin().await.map_err(err)?;
            let done = PostgresSql::rehash_in(&mut tx, rehash).await?;
            tx.commit().await.map_err(err)?;
            Ok(done)
        })
        .await
    }

    async fn hash_key_usage(&self, at: DateTime<Utc>) -> Result<Vec<KeyUsage>, StoreError> {
        self.retrying(|| async {
            // One snapshot for the counts and the recorded keys.
            let mut tx = self.pool.begin().await.map_err(err)?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let usage = PostgresSql::key_usage_in(&mut tx, at).await?;
            tx.commit().await.map_err(err)?;
            Ok(usage)
        })
        .await
    }

    /// Each batch of revocations, and the final check and removal, is one transaction,
    /// retried whole when the connection breaks (revoking is idempotent).
    async fn retire_hash_key(
        &self,
        key: KeyFingerprint,
        at: DateTime<Utc>,
        revoke_remaining: Option<Actor>,
    ) -> Result<Retired, StoreError> {
        let mut revoked = Vec::new();
        if let Some(by) = revoke_remaining {
            loop {
                let batch = self
                    .retrying(|| async {
                        let mut tx = self.pool.begin().await.map_err(err)?;
                        let batch = PostgresSql::revoke_under_key_in(
                            &mut tx,
                            key,
                            at,
                            by,
                            sql::RETIRED_PER_TRANSACTION,
                        )
                        .await?;
                        tx.commit().await.map_err(err)?;
                        Ok(batch)
                    })
                    .await?;
                let Some(batch) = batch else { break };
                revoked.extend(batch);
            }
        }
        self.retrying(|| async {
            let mut tx = self.begin_schema_change().await?;
            PostgresSql::forget_key_in(&mut tx, key, at).await?;
            tx.commit().await.map_err(err)
        })
        .await?;
        Ok(Retired { key, revoked })
    }

    /// Closes the pool's connections.
    async fn close(&self) {
        self.pool.close().await;
    }

    async fn record_last_use(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        self.retrying(|| PostgresSql::write_last_use(&self.pool, id, at, from))
            .await?;
        Ok(())
    }

    async fn events_since(
        &self,
        environment: Option<EnvironmentId>,
        after: EventCursor,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        self.retrying(|| async {
            let mut conn = self.pool.acquire().await.map_err(err)?;
            PostgresSql::events_in(&mut conn, environment, after, limit).await
        })
        .await
    }

    async fn event_head(&self) -> Result<EventCursor, StoreError> {
        self.retrying(|| async {
            let mut conn = self.pool.acquire().await.map_err(err)?;
            let (last, _) = PostgresSql::event_log(&mut conn).await?;
            Ok(EventCursor::after(last))
        })
        .await
    }

    async fn prune_events(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        self.retrying(|| async {
            let mut tx = self.pool.begin().await.map_err(err)?;
            let pruned = PostgresSql::prune_events_in(&mut tx, before, max).await?;
            tx.commit().await.map_err(err)?;
            Ok(pruned)
        })
        .await
    }

    async fn forget_leak_details(
        &self,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        // Idempotent: a retry after a lost commit forgets the next batch, if any.
        self.retrying(|| async {
            let mut tx = self.pool.begin().await.map_err(err)?;
            let forgotten = PostgresSql::forget_leak_details_in(&mut tx, before, max).await?;
            tx.commit().await.map_err(err)?;
            Ok(forgotten)
        })
        .await
    }

    fn watch(&self, after: EventCursor) -> Result<ChangeFeed, StoreError> {
        let source = PostgresFeed {
            pool: self.pool.clone(),
            listener: None,
            poll: self.feed_poll,
        };
        Ok(ChangeFeed::new(source, after))
    }
}

#[cfg(test)]
#[path = "../../tests/support/postgres_url.rs"]
mod test_postgres_url;

#[cfg(test)]
mod tests {
    use super::*;
    use core::str::FromStr;
    use uuid::Uuid;

    fn random_uuid() -> Uuid {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).unwrap();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// A statement's argument.
    #[derive(Clone, Copy)]
    enum Arg {
        Id(Uuid),
        At(DateTime<Utc>),
        Int(i64),
    }

    /// The plan of `query` run with `args`, as `EXPLAIN` shows it.
    async fn plan(pool: &PgPool, query: &str, args: &[Arg]) -> String {
        let explain = format!("EXPLAIN {query}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain.as_str()));
        for arg in args {
            q = match *arg {
                Arg::Id(id) => q.bind(id),
                Arg::At(at) => q.bind(at),
                Arg::Int(n) => q.bind(n),
            };
        }
        let rows = q.fetch_all(pool).await.unwrap();
        let lines: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        lines.join("\n")
    }

    /// The tokens indexes a plan reads.
    fn indexes(plan: &str) -> Vec<&str> {
        let mut found: Vec<&str> = plan
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|word| word.starts_with("apitoken_tokens_"))
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// For an environment newer than the table's statistics (which the planner takes for
    /// one of a few rows), every statement whose cost must not grow with the environment
    /// reads the index it is written for, never one that starts with the environment and
    /// holds all of its tokens, nor the whole table. With `environment_id = $n` the
    /// look-ups by id read `apitoken_tokens_created_by` there: a revocation of 3,000
    /// tokens took 2.7 s.
    ///
    /// Not checked: a page of one user's tokens there may read the environment's index
    /// and skip the other users' (both look as cheap to the planner until `ANALYZE`).
    #[tokio::test]
    async fn statements_read_their_index_in_an_environment_the_statistics_do_not_know() {
        let Some(url) = super::test_postgres_url::postgres_url(
            "store::postgres::tests::statements_read_their_index_in_an_environment_the_statistics_do_not_know",
        ) else {
            return;
        };
        let (admin, schema, store) = in_new_schema(&url, "apitoken_plans").await;
        let pool = store.pool();

        // An environment the statistics know: 20,000 tokens of 100 users, half of them
        // created by a token, and a few rotated.
        let known = random_uuid();
        sqlx::query(
            "INSERT INTO apitoken_tokens (id, hash, environment_id, checksum, created_by_id, \
             created_at, active, note, scopes, created_by_token, replaced_by, hash_key) \
             SELECT md5('k' || i)::uuid, sha256(('k' || i)::bytea), $1, 'abcdef', \
             md5('user' || i % 100)::uuid, \
             now() - interval '1 day' + i * interval '1 ms', i % 10 <> 0, '', '', \
             CASE WHEN i % 2 = 0 THEN md5('k' || (i - 1))::uuid END, \
             CASE WHEN i % 100 = 0 THEN md5('k' || (i + 1))::uuid END, 'unkeyed' \
             FROM generate_series(1, 20000) i",
        )
        .bind(known)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("ANALYZE apitoken_tokens")
            .execute(pool)
            .await
            .unwrap();
        // One it does not: created after the statistics, by a user they do not know.
        let fresh = random_uuid();
        let user = random_uuid();
        let [root, child, successor] = [random_uuid(), random_uuid(), random_uuid()];
        sqlx::query(
            "INSERT INTO apitoken_tokens (id, hash, environment_id, checksum, created_by_id, \
             created_at, active, note, scopes, created_by_token, replaced_by, hash_key) \
             SELECT id, sha256(id::text::bytea), $1, 'abcdef', $2, now(), true, '', '', \
             creator, successor, 'unkeyed' FROM (VALUES ($3::uuid, NULL::uuid, $5::uuid), \
             ($4, $3, NULL), ($5, NULL, NULL)) t(id, creator, successor)",
        )
        .bind(fresh)
        .bind(user)
        .bind(root)
        .bind(child)
        .bind(successor)
        .execute(pool)
        .await
        .unwrap();

        let now = Utc::now();
        let (env, at) = (Arg::Id(fresh), Arg::At(now));
        let (root, child, successor) = (Arg::Id(root), Arg::Id(child), Arg::Id(successor));
        let primary = "apitoken_tokens_id_key";
        let walk = "apitoken_tokens_created_by_token";
        let successors = "apitoken_tokens_replaced_by";
        let cases: &[(&str, &str, Vec<Arg>, &[&str])] = &[
            (
                "SELECT_TOKEN",
                PostgresSql::SELECT_TOKEN,
                vec![env, child],
                &[primary],
            ),
            (
                "SELECT_PREDECESSOR",
                PostgresSql::SELECT_PREDECESSOR,
                vec![env, root],
                &[primary],
            ),
            (
                "REVOKE",
                PostgresSql::REVOKE,
                vec![at, env, successor],
                &[primary],
            ),
            (
                "MARK_ROTATED",
                PostgresSql::MARK_ROTATED,
                vec![at, env, root, successor],
                &[primary],
            ),
            (
                "DEPTH",
                PostgresSql::DEPTH,
                vec![env, child, Arg::Int(8)],
                &[primary],
            ),
            (
                "DESCENDS_FROM",
                PostgresSql::DESCENDS_FROM,
                vec![env, child, root],
                &[primary],
            ),
            (
                "COUNT_CREATED_BY",
                PostgresSql::COUNT_CREATED_BY,
                vec![root, env, at],
                &[walk],
            ),
            (
                "REVOKE_CASCADE",
                PostgresSql::REVOKE_CASCADE,
                vec![at, env, successor],
                &[primary, successors, walk],
            ),
            (
                "LIST",
                PostgresSql::LIST,
                vec![
                    env,
                    Arg::At(PostgresSql::EARLIEST),
                    Arg::Id(Uuid::nil()),
                    Arg::Int(100),
                ],
                &["apitoken_tokens_environment_created"],
            ),
            (
                "LIST_LIVE",
                PostgresSql::LIST_LIVE,
                vec![
                    env,
                    Arg::At(PostgresSql::EARLIEST),
                    Arg::Id(Uuid::nil()),
                    at,
                    Arg::Int(100),
                    at,
                ],
                &["apitoken_tokens_environment_created"],
            ),
            (
                "PURGE",
                PostgresSql::PURGE,
                vec![at, Arg::Int(100)],
                &[primary, walk, "apitoken_tokens_expires"],
            ),
        ];
        for (name, query, args, expected) in cases {
            let plan = plan(pool, query, args).await;
            let mut expected = expected.to_vec();
            expected.sort_unstable();
            assert_eq!(
                indexes(&plan),
                expected,
                "{name} reads other indexes:\n{plan}"
            );
            assert!(
                !plan.contains("Seq Scan on apitoken_tokens"),
                "{name} reads the whole table:\n{plan}"
            );
        }

        store.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    }

    /// A revocation writes no index entry: each row it changes is updated in place (HOT),
    /// since no index holds `active` or `revoked_at` (schema 7). With them indexed, every
    /// revoked token wrote an entry in each of the table's indexes.
    #[tokio::test]
    async fn a_revocation_rewrites_no_index() {
        let Some(url) = super::test_postgres_url::postgres_url(
            "store::postgres::tests::a_revocation_rewrites_no_index",
        ) else {
            return;
        };
        let (admin, schema, store) = in_new_schema(&url, "apitoken_hot").await;
        let pool = store.pool();
        // A root, 20 tokens it created, 5 created by each of those, and a predecessor it
        // replaced, created over time among nine times as many tokens of another
        // environment (HOT needs room for the new row on the old one's page: a fifth of
        // each page is kept free, not enough for a page of nothing but the tree).
        let env = random_uuid();
        sqlx::query(
            "INSERT INTO apitoken_tokens (id, hash, environment_id, checksum, created_by_id, \
             created_at, active, note, scopes, created_by_token, replaced_by, hash_key) \
             SELECT id, sha256(id::text::bytea), env, 'abcdef', env, \
             now() - interval '1 hour' + n * interval '1 ms', true, '', '', by_token, replaced, \
             'unkeyed' \
             FROM (SELECT i * 10 AS n, md5('h' || i)::uuid AS id, $1 AS env, \
                 CASE WHEN i BETWEEN 1 AND 20 THEN md5('h0')::uuid \
                      WHEN i > 20 THEN md5('h' || ((i - 21) / 5 + 1))::uuid END AS by_token, \
                 CASE WHEN i = -1 THEN md5('h0')::uuid END AS replaced \
                 FROM generate_series(-1, 120) i \
               UNION ALL SELECT j, md5('o' || j)::uuid, $2, NULL, NULL \
                 FROM generate_series(-10, 1209) j WHERE j % 10 <> 0) rows ORDER BY n",
        )
        .bind(env)
        .bind(random_uuid())
        .execute(pool)
        .await
        .unwrap();
        let root: Uuid = sqlx::query_scalar("SELECT md5('h0')::uuid")
            .fetch_one(pool)
            .await
            .unwrap();
        let at = Utc::now();

        let mut tx = pool.begin().await.unwrap();
        let revoked = sqlx::query(PostgresSql::REVOKE)
            .bind(at)
            .bind(env)
            .bind(root)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(revoked.len(), 1);
        let cascade: Vec<Uuid> = sqlx::query_scalar(PostgresSql::REVOKE_CASCADE)
            .bind(at)
            .bind(env)
            .bind(root)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            cascade.len(),
            121,
            "20 children, 100 grandchildren, 1 predecessor"
        );
        let (updated, hot): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables \
             WHERE relid = 'apitoken_tokens'::regclass",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!((updated, hot), (122, 122), "rows updated, of which HOT");
        let noted: i64 =
            sqlx::query_scalar("SELECT count(*) FROM apitoken_revocations WHERE revoked_at = $1")
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(noted, 122, "each revocation has its row for purging");
        tx.rollback().await.unwrap();

        store.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    }

    /// A prepared store in a new schema named after `prefix`, with a pool outside it (to
    /// drop it at the end) and the schema's name.
    async fn in_new_schema(url: &str, prefix: &str) -> (PgPool, String, PostgresStore) {
        let schema = format!("{prefix}_{}", random_uuid().simple());
        let admin = PgPool::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let options = PgConnectOptions::from_str(url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store = PostgresStore::connect_with(options, PostgresStore::pool_options())
            .await
            .unwrap();
        store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
        (admin, schema, store)
    }

    /// A stored token of `environment` created now, by a user.
    fn stored(environment: EnvironmentId) -> StoredToken {
        let raw = crate::format::TokenFormat::dynamic().generate(&mut rand::rng());
        let now = Utc::now();
        let token = Token::new(
            TokenId::generate(now, &mut rand::rng()),
            environment,
            raw.checksum(),
            std::sync::Arc::new(crate::model::Creator::new(crate::model::UserId::from_uuid(
                random_uuid(),
            ))),
            now,
            crate::model::IssueRequest::new(crate::note::Note::new("trap").unwrap()),
            None,
        );
        StoredToken {
            hash: crate::hash::TokenHasher::unkeyed().hash(raw.expose_secret()),
            hash_key: crate::hash::KeyFingerprint::Unkeyed,
            token,
        }
    }

    /// Waits until a session of `pool`'s database waits for a lock.
    async fn until_a_session_waits_for_a_lock(admin: &PgPool, schema: &str) {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
            )
            .bind(schema)
            .fetch_one(admin)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// The sequence trap: a transaction that took a lower sequence number commits after
    /// one that took a higher number. A reader that goes on "after the last number seen"
    /// skips the lower one for good, as a plain `bigserial` log shows below; the store's
    /// log cannot be read that way wrongly, because the second append waits for the first
    /// transaction to end, so numbers commit in order.
    #[tokio::test]
    async fn a_reader_after_the_last_sequence_seen_never_skips_an_event() {
        let Some(url) = super::test_postgres_url::postgres_url(
            "store::postgres::tests::a_reader_after_the_last_sequence_seen_never_skips_an_event",
        ) else {
            return;
        };
        let (admin, schema, store) = in_new_schema(&url, "apitoken_trap").await;
        let pool = store.pool().clone();

        // The trap is real: with numbers from a sequence, the lower one commits last and
        // the reader skips it.
        sqlx::raw_sql("CREATE TABLE naive_log (sequence bigserial PRIMARY KEY, what text)")
            .execute(&pool)
            .await
            .unwrap();
        let mut first = pool.begin().await.unwrap();
        let low: i64 =
            sqlx::query_scalar("INSERT INTO naive_log (what) VALUES ('first') RETURNING sequence")
                .fetch_one(&mut *first)
                .await
                .unwrap();
        let high: i64 =
            sqlx::query_scalar("INSERT INTO naive_log (what) VALUES ('second') RETURNING sequence")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(low < high);
        let naive_read = |after: i64| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT sequence FROM naive_log WHERE sequence > $1 ORDER BY sequence",
                )
                .bind(after)
                .fetch_all(&pool)
                .await
                .unwrap()
            }
        };
        let mut seen = naive_read(0).await;
        first.commit().await.unwrap();
        let last = *seen.last().unwrap();
        seen.extend(naive_read(last).await);
        assert_eq!(
            seen,
            vec![high],
            "with a plain sequence the reader skips the event that committed late"
        );

        // The store's log: the first change holds its transaction open after appending.
        // (In two environments, so that only the log's lock keeps them apart.)
        let start = store.event_head().await.unwrap();
        let a = stored(EnvironmentId::from_uuid(random_uuid()));
        let b = stored(EnvironmentId::from_uuid(random_uuid()));
        let mut first = pool.begin().await.unwrap();
        PostgresSql::insert_checked(&mut first, &a, Limits::NONE)
            .await
            .unwrap();
        let second = tokio::spawn({
            let store = PostgresStore::from_pool(pool.clone());
            let b = b.clone();
            async move { store.insert(b, Limits::NONE).await }
        });
        // The second change has run up to its append and waits there.
        until_a_session_waits_for_a_lock(&admin, "apitoken_event_log").await;
        let mut seen = store.events_since(None, start, 100).await.unwrap();
        assert!(
            seen.events.is_empty(),
            "nothing is readable while the lower number is uncommitted: {:?}",
            seen.events
        );
        first.commit().await.unwrap();
        second.await.unwrap().unwrap();
        let mut after = seen.next;
        loop {
            let page = store.events_since(None, after, 100).await.unwrap();
            if page.events.is_empty() {
                break;
            }
            after = page.next;
            seen.events.extend(page.events);
        }
        let tokens: Vec<TokenId> = seen.events.iter().map(|e| e.token).collect();
        assert_eq!(
            tokens,
            vec![a.token.id, b.token.id],
            "the reader sees both events, in commit order"
        );

        store.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    }
}
