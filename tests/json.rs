//! The reference page's JSON, read and written exactly.
#![cfg(feature = "serde")]

use apitoken::{
    Creator, EnvironmentId, IssueRequest, IssuedToken, Note, Scope, Scopes, Token, TokenFormat,
};
use serde_json::{Value, json};

const REFERENCE_RESPONSE: &str = r#"{
  "token": {
    "id": "95b11417-f18f-457f-8804-68e361f9164f",
    "rawToken": "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
    "checksum": "4n3LFC",
    "createdBy": {
      "id": "95b11417-f18f-457f-8804-68e361f9164f",
      "alias": "<string>",
      "firstName": "<string>",
      "lastName": "<string>",
      "email": "jsmith@example.com"
    },
    "createdAt": "2023-11-07T05:31:56Z",
    "active": true,
    "note": "<string>",
    "projectEnvironmentId": "95b11417-f18f-457f-8804-68e361f9164f",
    "projectEnvironment": {
      "id": "95b11417-f18f-457f-8804-68e361f9164f"
    },
    "scopes": []
  }
}"#;

const REFERENCE_REQUEST: &str = r#"{
  "note": "<string>",
  "scopes": []
}"#;

fn reference_value() -> Value {
    serde_json::from_str(REFERENCE_RESPONSE).unwrap()
}

#[test]
fn reference_response_round_trips_to_an_equal_value() {
    let issued: IssuedToken = serde_json::from_str(REFERENCE_RESPONSE).unwrap();
    assert_eq!(issued.raw.checksum().as_str(), "4n3LFC");
    assert_eq!(issued.token.checksum.as_str(), "4n3LFC");
    assert_eq!(issued.token.note.as_str(), "<string>");
    assert!(issued.token.active);
    assert_eq!(
        issued.token.created_by.email.as_deref(),
        Some("jsmith@example.com")
    );
    let back = serde_json::to_value(&issued).unwrap();
    assert_eq!(back, reference_value());
}

#[test]
fn token_without_raw_serializes_without_raw_token() {
    let issued: IssuedToken = serde_json::from_str(REFERENCE_RESPONSE).unwrap();
    let value = serde_json::to_value(&issued.token).unwrap();
    let mut expected = reference_value()["token"].clone();
    expected.as_object_mut().unwrap().remove("rawToken");
    assert_eq!(value, expected);
    let token: Token = serde_json::from_value(value).unwrap();
    assert_eq!(token, issued.token);
}

#[test]
fn reference_request_deserializes() {
    let request: IssueRequest = serde_json::from_str(REFERENCE_REQUEST).unwrap();
    assert_eq!(request.note, Note::new("<string>").unwrap());
    assert!(request.scopes.is_empty());
    assert_eq!(request.expires_at, None);
    let with_scopes: IssueRequest = serde_json::from_str(
        r#"{"note":"x","scopes":["environment.users.read","waas.authenticate"],"expiresAt":"2030-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(
        with_scopes.scopes,
        Scopes::from([Scope::WAAS_AUTHENTICATE, Scope::ENVIRONMENT_USERS_READ])
    );
    assert!(with_scopes.expires_at.is_some());
    let absent: IssueRequest = serde_json::from_str(r#"{"note":"x"}"#).unwrap();
    assert!(absent.scopes.is_empty(), "absent scopes means none");
}

#[test]
fn request_without_note_or_with_bad_fields_is_rejected() {
    for bad in [
        r#"{"scopes":[]}"#,
        r#"{"note":"   "}"#,
        r#"{"note":"x","scopes":["not a scope"]}"#,
        r#"{"note":"x","scopes":"environment.users.read"}"#,
        r#"{"note":"x","expiresAt":"tomorrow"}"#,
    ] {
        assert!(
            serde_json::from_str::<IssueRequest>(bad).is_err(),
            "{bad} must be rejected"
        );
    }
}

fn with_token_field(field: &str, value: Value) -> Value {
    let mut v = reference_value();
    v["token"][field] = value;
    v
}

#[test]
fn raw_token_is_parsed_with_its_checksum() {
    // One character of the random part changed: the checksum no longer matches.
    let bad = with_token_field(
        "rawToken",
        json!("dyn_bGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC"),
    );
    let err = serde_json::from_value::<IssuedToken>(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        !err.contains("GLjTe3TUN40"),
        "the error echoes the secret: {err}"
    );

    let bad = with_token_field("rawToken", json!("not a token"));
    assert!(serde_json::from_value::<IssuedToken>(bad).is_err());
}

#[test]
fn checksum_must_be_the_raw_tokens_last_six_characters() {
    let bad = with_token_field("checksum", json!("4n3LFD"));
    let err = serde_json::from_value::<IssuedToken>(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("last 6 characters of `rawToken`"), "{err}");
}

#[test]
fn issued_token_requires_raw_token() {
    let mut v = reference_value();
    v["token"].as_object_mut().unwrap().remove("rawToken");
    let err = serde_json::from_value::<IssuedToken>(v)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rawToken"), "{err}");
}

#[test]
fn environment_ids_must_agree() {
    let bad = with_token_field(
        "projectEnvironment",
        json!({"id": "00000000-0000-0000-0000-000000000001"}),
    );
    assert!(serde_json::from_value::<IssuedToken>(bad).is_err());
    let mut only_nested = reference_value();
    only_nested["token"]
        .as_object_mut()
        .unwrap()
        .remove("projectEnvironmentId");
    let issued: IssuedToken = serde_json::from_value(only_nested).unwrap();
    assert_eq!(
        issued.token.environment,
        "95b11417-f18f-457f-8804-68e361f9164f"
            .parse::<EnvironmentId>()
            .unwrap()
    );
}

#[test]
fn optional_timestamps_are_omitted_when_empty_and_kept_at_microseconds() {
    let mut issued: IssuedToken = serde_json::from_str(REFERENCE_RESPONSE).unwrap();
    let v = serde_json::to_value(&issued.token).unwrap();
    for absent in ["expiresAt", "lastUsedAt", "revokedAt"] {
        assert!(v.get(absent).is_none(), "{absent} must be omitted");
    }
    let at = "2026-01-02T03:04:05.123456Z".parse().unwrap();
    issued.token.expires_at = Some(at);
    issued.token.last_used_at = Some(at);
    let v = serde_json::to_value(&issued.token).unwrap();
    assert_eq!(v["expiresAt"], json!("2026-01-02T03:04:05.123456Z"));
    assert_eq!(v["lastUsedAt"], json!("2026-01-02T03:04:05.123456Z"));
    let back: Token = serde_json::from_value(v).unwrap();
    assert_eq!(back.expires_at, Some(at));
}

#[test]
fn created_at_in_another_offset_is_normalized_to_utc() {
    let v = with_token_field("createdAt", json!("2023-11-07T07:31:56+02:00"));
    let issued: IssuedToken = serde_json::from_value(v).unwrap();
    let out = serde_json::to_value(&issued).unwrap();
    assert_eq!(out["token"]["createdAt"], json!("2023-11-07T05:31:56Z"));
}

#[test]
fn scopes_serialize_in_canonical_order() {
    let v = with_token_field(
        "scopes",
        json!([
            "waas.authenticate",
            "environment.users.read",
            "waas.authenticate"
        ]),
    );
    let issued: IssuedToken = serde_json::from_value(v).unwrap();
    let out = serde_json::to_value(&issued).unwrap();
    assert_eq!(
        out["token"]["scopes"],
        json!(["environment.users.read", "waas.authenticate"])
    );
}

#[test]
fn creator_fields_are_optional_except_id() {
    let c: Creator =
        serde_json::from_value(json!({"id": "95b11417-f18f-457f-8804-68e361f9164f"})).unwrap();
    assert_eq!(c.email, None);
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"id": "95b11417-f18f-457f-8804-68e361f9164f"})
    );
    assert!(serde_json::from_value::<Creator>(json!({"email": "a@b.c"})).is_err());
}

#[test]
fn ids_are_lower_case_hyphenated() {
    let issued: IssuedToken = serde_json::from_str(REFERENCE_RESPONSE).unwrap();
    assert_eq!(
        issued.token.id.to_string(),
        "95b11417-f18f-457f-8804-68e361f9164f"
    );
}

#[test]
fn issued_token_json_holds_the_secret_only_in_raw_token() {
    let format = TokenFormat::dynamic();
    let raw = format.generate(&mut rand::rng());
    let secret = raw.expose_secret().to_owned();
    let mut issued: IssuedToken = serde_json::from_str(REFERENCE_RESPONSE).unwrap();
    issued.token.checksum = raw.checksum();
    issued.raw = raw;
    let text = serde_json::to_string(&issued).unwrap();
    assert_eq!(text.matches(&secret[4..34]).count(), 1);
    assert!(
        !serde_json::to_string(&issued.token)
            .unwrap()
            .contains(&secret[4..34])
    );
    assert!(!format!("{issued:?}").contains(&secret[4..34]));
}
