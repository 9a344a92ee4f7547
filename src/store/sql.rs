//! What the SQL stores share: the record's columns, decoding, and error mapping.

use super::{BoxError, StoreError, UniqueKey};
use crate::format::Checksum;
use crate::model::{Creator, EnvironmentId, Token, TokenId, UserId};
use crate::note::Note;
use crate::scope::{Scope, Scopes};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

/// The columns every query returns, in this order, as a literal for `concat!`: the
/// queries are then `&'static str`, built at compile time rather than on every call.
macro_rules! token_columns {
    () => {
        "id, environment_id, checksum, created_by_id, created_by_alias, \
         created_by_first_name, created_by_last_name, created_by_email, created_at, active, \
         note, scopes, expires_at, last_used_at, revoked_at"
    };
}
pub(crate) use token_columns;

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
#[cfg(feature = "sqlite")]
macro_rules! sqlite_decoy_columns {
    () => {
        "X'0190a5c47d3e7b5a9c1d000000000000', X'0190a5c47d3e7b5a9c1d000000000001', '000000', \
         X'0190a5c47d3e7b5a9c1d000000000002', 'decoy', NULL, NULL, 'decoy@example.invalid', \
         1767225600000000, 1, 'decoy, read on a look-up miss', \
         'environment.apiTokens.read environment.apiTokens.write environment.users.read', \
         NULL, NULL, NULL"
    };
}
#[cfg(feature = "sqlite")]
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
         NULL::timestamptz, NULL::timestamptz, NULL::timestamptz"
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
            revoked_at: self.revoked_at,
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
pub(crate) enum Dialect {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// Maps a driver error to its semantic kind, keeping it as the source.
pub(crate) fn map_error(e: sqlx::Error, dialect: Dialect) -> StoreError {
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
        sqlx::Error::Database(db) if matches!(sqlite_code(&*db, dialect), Some(11 | 26)) => {
            StoreError::Corrupt {
                message: format!(
                    "the database file is damaged or is not a SQLite database ({}): restore it from a backup, or salvage what is readable with `sqlite3 FILE .recover | sqlite3 NEW_FILE`",
                    db.message()
                ),
                source: Some(Box::new(sqlx::Error::Database(db))),
            }
        }
        sqlx::Error::Database(db) if sqlite_code(&*db, dialect) == Some(13) => StoreError::Full {
            source: Box::new(sqlx::Error::Database(db)),
        },
        sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref(), dialect) => {
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
fn sqlite_code(db: &dyn sqlx::error::DatabaseError, dialect: Dialect) -> Option<u32> {
    match dialect {
        Dialect::Sqlite => db.code()?.parse::<u32>().ok().map(|c| c & 0xff),
        Dialect::Postgres => None,
    }
}

/// Error codes that mean "try again later": PostgreSQL's connection exceptions (08…),
/// sessions its idle timeouts ended (57P05, 25P03), lock waits past `lock_timeout` (55P03),
/// shutdowns (57P01–57P03), too many connections (53300); SQLite's busy and locked
/// (after the busy timeout), I/O and cannot-open errors (primary codes 5, 6, 10, 14 in
/// the low byte of the extended code).
fn is_unavailable_code(code: Option<&str>, dialect: Dialect) -> bool {
    let Some(code) = code else {
        return false;
    };
    match dialect {
        Dialect::Postgres => {
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "57P05" | "25P03" | "55P03" | "53300"
                )
        }
        Dialect::Sqlite => matches!(code.parse::<u32>().map(|c| c & 0xff), Ok(5 | 6 | 10 | 14)),
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

pub(crate) fn check_hash_key(stored: Option<String>, given: &str) -> Result<bool, StoreError> {
    match stored {
        None => Ok(true),
        Some(stored) if stored == given => Ok(false),
        Some(stored) => Err(StoreError::HashKeyMismatch {
            stored,
            given: given.to_owned(),
        }),
    }
}
