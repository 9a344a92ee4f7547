//! The `apitoken` command line: issue, list, revoke, rotate and verify API tokens kept in
//! a SQLite file or a PostgreSQL database, read or follow their audit trail, and check or
//! find tokens in text.
//!
//! Exit codes: 0 success; 1 a token was rejected (`verify`, `inspect`) or found (`scan`);
//! 2 anything else, with one `error: …` line on standard error that says what to do.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod args;
mod commands;
mod failure;
mod input;
mod output;
mod storage;

use failure::Failure;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match args::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Failure::usage(format!("cannot start the async runtime: {e}")).report(),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
