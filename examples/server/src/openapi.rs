//! The OpenAPI 3.1 description: the reference's schemas, as the library writes them.
//!
//! These types only describe; the JSON itself comes from the library's own `Serialize`
//! implementations. The end-to-end tests check each answer against these schemas.

#![allow(dead_code)] // The fields are read by the schema derive only.

use apitoken::ScopeCatalog;
use serde_json::Value;
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{IntoParams, Modify, PartialSchema, ToSchema};

/// A scope name; the enumeration is the server's catalog.
pub(crate) struct ScopeName;

impl PartialSchema for ScopeName {
    fn schema() -> RefOr<Schema> {
        scope_schema(&ScopeCatalog::reference())
    }
}

impl ToSchema for ScopeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scope")
    }
}

fn scope_schema(catalog: &ScopeCatalog) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Scopes assigned to an API token which they will have access to.",
        ))
        .enum_values(Some(catalog.scopes().iter().map(|s| s.as_str().to_owned())))
        .into()
}

/// Environment API token required fields for creation.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct PostTokenFields {
    /// Name or note to help identify this token and its use.
    #[schema(min_length = 1, max_length = 100, example = "CI deploys")]
    note: String,
    /// Scopes assigned to the token; absent means none. A token can only grant scopes it
    /// holds itself.
    scopes: Option<Vec<ScopeName>>,
    /// When the token stops working (an extension of the reference); absent means never.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// Who created a token.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct CreatedBy {
    #[schema(format = "uuid")]
    id: String,
    alias: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    #[schema(format = Email)]
    email: Option<String>,
}

/// The environment a token belongs to.
#[derive(ToSchema)]
pub(crate) struct ProjectEnvironment {
    #[schema(format = "uuid")]
    id: String,
}

/// A newly created token, with its plaintext: the only time it is revealed.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct TokenWithRaw {
    #[schema(format = "uuid")]
    id: String,
    /// The token itself: `dyn_` + 30 random characters + the 6-character checksum.
    #[schema(example = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC")]
    raw_token: String,
    /// The last 6 characters of the raw token.
    #[schema(example = "4n3LFC")]
    checksum: String,
    created_by: CreatedBy,
    #[schema(format = DateTime)]
    created_at: String,
    /// Whether the token can be used at the time of the answer: false once it is revoked
    /// or expired. Only active tokens can be used.
    active: Option<bool>,
    note: Option<String>,
    #[schema(format = "uuid")]
    project_environment_id: Option<String>,
    project_environment: Option<ProjectEnvironment>,
    scopes: Option<Vec<ScopeName>>,
    /// When the token stops working, if ever (an extension of the reference).
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// When the token last authenticated, recorded at most once a minute (an extension).
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
    /// When the token was revoked (an extension).
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
}

/// A token's record, never with its plaintext.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct Token {
    #[schema(format = "uuid")]
    id: String,
    /// The last 6 characters of the raw token.
    #[schema(example = "4n3LFC")]
    checksum: String,
    created_by: CreatedBy,
    #[schema(format = DateTime)]
    created_at: String,
    /// Whether the token can be used at the time of the answer: false once it is revoked
    /// or expired. Only active tokens can be used.
    active: Option<bool>,
    note: Option<String>,
    #[schema(format = "uuid")]
    project_environment_id: Option<String>,
    project_environment: Option<ProjectEnvironment>,
    scopes: Option<Vec<ScopeName>>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    #[schema(format = DateTime)]
    last_used_at: Option<String>,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
}

/// The answer to a create request.
#[derive(ToSchema)]
pub(crate) struct CreatedToken {
    token: TokenWithRaw,
}

/// One token.
#[derive(ToSchema)]
pub(crate) struct OneToken {
    token: Token,
}

/// A list of tokens, oldest first.
#[derive(ToSchema)]
pub(crate) struct TokenList {
    tokens: Vec<Token>,
}

/// An error: 400, 401, 403, 404, 413, 415, 503.
#[derive(ToSchema)]
pub(crate) struct ErrorBody {
    #[schema(example = "invalid or expired API token")]
    error: String,
}

/// A request that is well-formed but cannot be carried out.
#[derive(ToSchema)]
pub(crate) struct UnprocessableBody {
    error: String,
    /// `invalid_scopes`, `too_many_api_tokens`, `invalid_note` or `invalid_expires_at`.
    #[schema(example = "invalid_scopes")]
    code: String,
    /// Details for programs: `unknown` and `notHeld` scopes for `invalid_scopes`,
    /// `projectEnvironmentId` and `limit` for `too_many_api_tokens`.
    #[schema(value_type = Object)]
    payload: Value,
}

/// The environment of the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub(crate) struct EnvironmentPath {
    /// The environment's id.
    #[param(value_type = String, format = "uuid")]
    environment_id: String,
}

/// A token of the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub(crate) struct TokenPath {
    /// The token's id.
    #[param(value_type = String, format = "uuid")]
    token_id: String,
}

/// The bearer scheme every operation uses.
pub(crate) struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token: `Authorization: Bearer dyn_…`. Issue the first one with the `apitoken` CLI.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Sets the `Scope` enumeration to the scopes this server grants.
pub(crate) fn set_scopes(openapi: &mut OpenApi, catalog: &ScopeCatalog) {
    if let Some(components) = openapi.components.as_mut() {
        components
            .schemas
            .insert("Scope".to_owned(), scope_schema(catalog));
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "apitoken-server",
        description = "Dynamic's API-token endpoints, served by the `apitoken` library. Every operation needs `Authorization: Bearer <token>`; 401 answers are identical for malformed, unknown, revoked and expired tokens.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearerAuth" = [])),
    tags((name = "tokens", description = "API tokens"))
)]
pub(crate) struct ApiDoc;
