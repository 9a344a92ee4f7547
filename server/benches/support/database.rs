//! A database of its own for a bench: a temporary SQLite file, or a PostgreSQL schema (at
//! `APITOKEN_TEST_POSTGRES_URL`, else the local default), removed by [`Database::remove`].
#![allow(dead_code)] // not every bench uses every part

use apitoken::{PostgresStore, SqliteStore, TokenHasher, TokenStore};
use std::path::PathBuf;

pub(crate) enum Database {
    Sqlite(PathBuf),
    Postgres {
        admin: PostgresStore,
        schema: String,
        url: String,
    },
}

pub(crate) fn unique() -> String {
    format!(
        "apitoken_bench_{}_{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    )
}

impl Database {
    pub(crate) async fn postgres() -> Database {
        let base = std::env::var("APITOKEN_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let admin = PostgresStore::connect(&base)
            .await
            .expect("connect to PostgreSQL");
        let schema = unique();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(admin.pool())
            .await
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        Database::Postgres { admin, schema, url }
    }

    pub(crate) async fn sqlite() -> Database {
        Database::Sqlite(std::env::temp_dir().join(format!("{}.db", unique())))
    }

    pub(crate) async fn store(&self) -> Box<dyn TokenStore> {
        let store: Box<dyn TokenStore> = match self {
            Database::Sqlite(path) => Box::new(SqliteStore::open(path).await.unwrap()),
            Database::Postgres { url, .. } => Box::new(PostgresStore::connect(url).await.unwrap()),
        };
        store
            .prepare(TokenHasher::unkeyed().fingerprint())
            .await
            .unwrap();
        store
    }

    /// What it is, for a report.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "SQLite file",
            Database::Postgres { .. } => "PostgreSQL",
        }
    }

    pub(crate) fn args(&self) -> Vec<String> {
        match self {
            Database::Sqlite(path) => vec!["--db".to_owned(), path.display().to_string()],
            Database::Postgres { url, .. } => vec!["--database-url".to_owned(), url.clone()],
        }
    }

    pub(crate) async fn remove(self) {
        match self {
            Database::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Database::Postgres { admin, schema, .. } => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(admin.pool())
                    .await
                    .unwrap();
                admin.pool().close().await;
            }
        }
    }
}
