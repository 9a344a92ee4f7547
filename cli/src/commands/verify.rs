//! `verify`: authenticate (and authorize) a token against the store.

use super::failure;
use crate::args::{Global, VerifyArgs};
use crate::failure::{Failure, emit};
use crate::input;
use crate::output;
use crate::storage::{self, Access};
use apitoken::bearer_token;
use apitoken::{Creator, EnvironmentId, Error, Principal, Scopes, TokenId};
use serde::Serialize;
use std::process::ExitCode;

pub(crate) async fn verify(global: &Global, args: VerifyArgs) -> Result<ExitCode, Failure> {
    if args.token.as_deref().is_some_and(|t| t != "-") && !args.insecure_argv {
        return Err(Failure::usage(
            "a token given as an argument can be read by other local users (ps, /proc) and stays in the shell history: pipe it on standard input with `-` (printf '%s' \"$TOKEN\" | apitoken verify -), or pass --insecure-argv to accept it anyway",
        ));
    }
    let input = input::token(args.token.as_deref())?;
    // A token, or an `Authorization` header value holding one.
    let token = bearer_token(&input).unwrap_or(&input);
    let principal = storage::with_issuer(global, Access::Read, async |issuer| {
        match (args.env, args.from) {
            (Some(environment), Some(from)) => {
                issuer
                    .authorize_from(token, from, environment, &args.scopes)
                    .await
            }
            (Some(environment), None) => issuer.authorize(token, environment, &args.scopes).await,
            (None, Some(from)) => issuer.authenticate_from(token, from).await,
            (None, None) => issuer.authenticate(token).await,
        }
        .map_err(rejection)
    })
    .await?;
    drop(input);
    if args.env.is_none()
        && let Some(scope) = principal.scopes().first_missing(&args.scopes)
    {
        return Err(Failure::rejected(format!(
            "verification failed (missing scope): token {} lacks the scope `{scope}`",
            principal.token_id()
        )));
    }
    if args.json {
        emit(&json(&principal)?)?;
    } else {
        emit(&describe(&principal))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 with the reason's category for a rejected token; storage and other errors stay
/// exit 2. The library's messages never contain the presented token.
fn rejection(e: Error) -> Failure {
    let (category, hint) = match &e {
        Error::Malformed(_) => ("malformed", ""),
        Error::Unknown { .. } => (
            "unknown",
            "; check that --db or --database-url names the database it was issued into",
        ),
        Error::Revoked { .. } => ("revoked", ""),
        Error::Expired { .. } => ("expired", ""),
        Error::WrongEnvironment { .. } => ("wrong environment", ""),
        Error::MissingScope { .. } => ("missing scope", ""),
        Error::IpNotAllowed { client: None, .. } => {
            ("ip not allowed", "; give the client's address with --from")
        }
        Error::IpNotAllowed { .. } => ("ip not allowed", ""),
        _ => return failure(e),
    };
    Failure::rejected(format!("verification failed ({category}): {e}{hint}"))
}

fn describe(p: &Principal) -> String {
    output::fields(&[
        ("result", "valid".to_owned()),
        ("token", p.token_id().to_string()),
        ("environment", p.environment().to_string()),
        ("scopes", output::scopes(p.scopes())),
        (
            "expires",
            p.expires_at()
                .map_or_else(|| "never".to_owned(), output::rfc3339),
        ),
        ("created by", output::creator(p.created_by())),
    ])
}

/// The principal in the reference's camelCase.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrincipalOut<'a> {
    valid: bool,
    token_id: TokenId,
    project_environment_id: EnvironmentId,
    scopes: &'a Scopes,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    created_by: &'a Creator,
}

fn json(p: &Principal) -> Result<String, Failure> {
    let out = PrincipalOut {
        valid: true,
        token_id: p.token_id(),
        project_environment_id: p.environment(),
        scopes: p.scopes(),
        expires_at: p.expires_at().map(output::rfc3339),
        created_by: p.created_by(),
    };
    serde_json::to_string_pretty(&out)
        .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))
}
