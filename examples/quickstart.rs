//! Issues a token into a `MemoryStore`, authenticates it, revokes it, and prints the
//! reference-shaped JSON of the issued token.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use apitoken::{
    Creator, EnvironmentId, IssueRequest, MemoryStore, Note, Scope, TokenIssuer, UserId,
};
use chrono::Utc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = TokenIssuer::new(MemoryStore::new());
    let mut rng = rand::rng();
    let environment = EnvironmentId::generate(Utc::now(), &mut rng);
    let creator = Creator {
        alias: Some("quickstart".into()),
        email: Some("jsmith@example.com".into()),
        ..Creator::new(UserId::generate(Utc::now(), &mut rng))
    };

    // Issue: the raw token is in this response and nowhere else, ever.
    let request = IssueRequest::new(Note::new("quickstart example")?)
        .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]);
    let issued = issuer.issue(environment, creator, request).await?;
    println!("{}", serde_json::to_string_pretty(&issued)?);

    // Authenticate and authorize, as a server does with an `Authorization` header.
    let header = format!("Bearer {}", issued.raw.expose_secret());
    let principal = issuer.authenticate_header(&header).await?;
    principal.authorize(environment, &[Scope::ENVIRONMENT_API_TOKENS_READ])?;
    eprintln!(
        "authenticated: token {} in environment {} with scopes {:?}",
        principal.token_id(),
        principal.environment(),
        principal.scopes()
    );

    // Revoke (here the token revokes itself): from now on it is refused.
    issuer
        .revoke(environment, &principal, issued.token.id)
        .await?;
    match issuer.authenticate_header(&header).await {
        Ok(_) => return Err("a revoked token authenticated".into()),
        Err(e) => eprintln!(
            "after revoke: refused with HTTP {} {:?} (log: {e})",
            apitoken::http::status(&e),
            apitoken::http::public_message(&e)
        ),
    }
    Ok(())
}
