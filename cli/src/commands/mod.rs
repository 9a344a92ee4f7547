//! One function per subcommand.

mod events;
mod inspect;
mod keys;
mod scan;
mod tokens;
mod verify;

use crate::args::{Cli, Command, FormatArgs, Global, KeysCommand};
use crate::failure::{Failure, emit};
use crate::storage;
use apitoken::{Error, StoreError, TokenFormat};
use std::process::ExitCode;

/// Runs the command; `Ok` carries the exit code of a command that ran to its end.
pub(crate) async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let Cli { global, command } = cli;
    match command {
        Command::Issue(args) => tokens::issue(&global, args).await,
        Command::List(args) => tokens::list(&global, args).await,
        Command::Get(args) => tokens::get(&global, args).await,
        Command::Revoke(args) => tokens::revoke(&global, args).await,
        Command::Rotate(args) => tokens::rotate(&global, args).await,
        Command::Verify(args) => verify::verify(&global, args).await,
        Command::Inspect(args) => inspect::inspect(&args),
        Command::Scan(args) if args.revoke => scan::scan_and_revoke(&global, args).await,
        Command::Scan(args) => scan::scan(args),
        Command::Purge(args) => tokens::purge(&global, args).await,
        Command::Scopes => scopes(&global),
        Command::Events(args) => events::events(&global, args).await,
        Command::Keys(KeysCommand::Status(args)) => keys::status(&global, args).await,
        Command::Keys(KeysCommand::Retire(args)) => keys::retire(&global, args).await,
    }
}

fn scopes(global: &Global) -> Result<ExitCode, Failure> {
    let catalog = storage::catalog(global);
    let mut out = String::new();
    for scope in catalog.scopes() {
        out.push_str(scope.as_str());
        out.push('\n');
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// An issuer error as a one-line failure that says what to do.
fn failure(e: Error) -> Failure {
    match &e {
        Error::Store(StoreError::NotFound { environment, .. }) => Failure::usage(format!(
            "{e}: list the environment's tokens with `apitoken list --env {environment}`"
        )),
        Error::InvalidScopes { .. } => Failure::usage(format!(
            "{e} run `apitoken scopes` for the accepted scopes, or add yours with --extra-scopes"
        )),
        _ => Failure::usage(e.to_string()),
    }
}

/// The format the options describe: Dynamic's, with what they change.
fn format_from(args: &FormatArgs) -> Result<TokenFormat, Failure> {
    let mut format = TokenFormat::dynamic();
    if let Some(prefix) = &args.prefix {
        format = format
            .with_prefix(prefix)
            .map_err(|e| Failure::usage(format!("invalid --prefix: {e}")))?;
    }
    if let Some(length) = args.length {
        format = format
            .with_random_len(length)
            .map_err(|e| Failure::usage(format!("invalid --length: {e}")))?;
    }
    if let Some(alphabet) = args.alphabet {
        format = format.with_alphabet(alphabet);
    }
    Ok(format)
}
