//! The PostgreSQL skip rule of every test that needs a server: the library's, the CLI's
//! and the reference server's (included by path from each, so there is one copy).

use std::io::Write;

/// The PostgreSQL URL for tests, or `None` (after saying so loudly) when `test` is to be
/// skipped. With `APITOKEN_REQUIRE_POSTGRES=1` a missing URL is a failure.
pub(crate) fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("APITOKEN_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("APITOKEN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "APITOKEN_REQUIRE_POSTGRES=1 but APITOKEN_TEST_POSTGRES_URL is not set: \
                 set it to e.g. postgres://postgres@127.0.0.1:5432/test"
            );
            // Written to standard error directly, so that the test harness does not
            // capture it: a skipped test must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPED {test}: APITOKEN_TEST_POSTGRES_URL is not set \
                 (e.g. postgres://postgres@127.0.0.1:5432/test) !!!\n"
            );
            None
        }
    }
}
