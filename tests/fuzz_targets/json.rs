//! `json`: serde_json deserialization of `IssueRequest`, `Token` and `IssuedToken`, and
//! the round trip of whatever was accepted: serialize, deserialize, equal, and the same
//! JSON again. A `Token` is also read from the `token` member of the input (the shape of
//! the issue response), through `serde_json::Value`.
//!
//! Also: only `IssuedToken` writes `rawToken`, and its checksum is the raw token's.

use apitoken::{IssueRequest, IssuedToken, Token};
use core::fmt::Debug;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub(crate) fn json(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<IssueRequest>(data) {
        round_trip(&request);
    }
    if let Ok(token) = serde_json::from_slice::<Token>(data) {
        check_token(&token);
    }
    if let Ok(issued) = serde_json::from_slice::<IssuedToken>(data) {
        check_issued(&issued);
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        for value in [value.get("token"), Some(&value)].into_iter().flatten() {
            if let Ok(token) = serde_json::from_value::<Token>(value.clone()) {
                check_token(&token);
            }
            if let Ok(request) = serde_json::from_value::<IssueRequest>(value.clone()) {
                round_trip(&request);
            }
        }
        if let Ok(issued) = serde_json::from_value::<IssuedToken>(value) {
            check_issued(&issued);
        }
    }
}

fn check_token(token: &Token) {
    let json = round_trip(token);
    let value: Value = serde_json::from_str(&json).expect("valid JSON");
    assert!(
        value.get("rawToken").is_none(),
        "a Token wrote rawToken: {json}"
    );
}

fn check_issued(issued: &IssuedToken) {
    let json = round_trip(issued);
    assert_eq!(issued.raw.checksum(), issued.token.checksum);
    let value: Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(
        value["token"]["rawToken"].as_str(),
        Some(issued.raw.expose_secret())
    );
    check_token(&issued.token);
}

/// Serializes `value`, reads it back, and checks that nothing changed; returns the JSON.
fn round_trip<T>(value: &T) -> String
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let json = serde_json::to_string(value).expect("an accepted value serializes");
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{json} was written but does not read back: {e}"));
    assert!(
        back == *value,
        "{value:?} came back as {back:?} through {json}"
    );
    let again = serde_json::to_string(&back).expect("serializes");
    assert_eq!(again, json, "serialization is not stable");
    json
}
