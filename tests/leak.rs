//! Leak intake (`apitoken::leak`): the reference's two signed vectors and keys of our own
//! verify, and any change to a body, a signature or the key refuses them; key lists and
//! report bodies are read as documented, with their limits; and nothing read from a
//! partner's request panics, whatever the input.
#![cfg(feature = "leak")]
// Tests unwrap, index and panic freely: a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use apitoken::leak::{
    KeyId, KeyList, KeyListError, KeySource, KeySourceError, MAX_MATCHES, MAX_REPORT_BYTES, Report,
    ReportError, ReportField, ReportKey, Signature, StaticKeys, VerifyError, verify, verify_with,
};
use async_trait::async_trait;
use base64ct::{Base64, Encoding};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const MIB: usize = 1 << 20;

// The reference's vectors (shared/reference/secret-scanning.md), each verified there with
// Python's `cryptography`. A: GitHub's documentation; B: an open-source integration.
const KEY_A: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAdAjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==";
const SIG_A: &str = "MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66YcAdjxji410VQV4xg==";
const BODY_A: &[u8] = br#"[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]"#;
const KEY_B: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUqkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==";
const SIG_B: &str = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";
const BODY_B: &[u8] = br#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;

/// Other keys, made with `openssl`: a P-384 key and an Ed25519 key (neither is P-256).
const P384_PEM: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEqz8PAyLv2si9H5y5zGS55PaFApgGxfTL
hUYQneUHpKS6Nj3rnsgFexi8XbiypXCdtIbWvAOXQKwAcbtT3xcvJGzsQZCqzrGz
WDbYQ+dzjQx7EG4Qz0ygr4BlCI07J5v9
-----END PUBLIC KEY-----
";
const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAEDcD2QZyOEdaIWx72kNE9OaSVUEZc5wG9fmeMMA7BPg=
-----END PUBLIC KEY-----
";

/// A key's base64 DER in PEM lines of 64 characters, as key lists hold it.
fn pem(der_base64: &str) -> String {
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in der_base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out + "-----END PUBLIC KEY-----\n"
}

/// A key of our own in PEM: the SubjectPublicKeyInfo header every P-256 key shares (the
/// first 26 bytes of vector A's key), then its uncompressed point.
fn pem_of(signing: &SigningKey) -> String {
    let mut der = Base64::decode_vec(KEY_A).unwrap()[..26].to_vec();
    der.extend_from_slice(signing.verifying_key().to_sec1_point(false).as_bytes());
    pem(&Base64::encode_string(&der))
}

/// A key list in the partners' JSON shape.
fn key_list_json(entries: &[(&str, &str)]) -> Vec<u8> {
    let keys: Vec<Value> = entries
        .iter()
        .map(|(id, pem)| json!({"key_identifier": id, "key": pem, "is_current": true}))
        .collect();
    json!({ "public_keys": keys }).to_string().into_bytes()
}

/// Vector A's key under `a`, vector B's under `b`.
fn keys() -> KeyList {
    KeyList::from_json(&key_list_json(&[("a", &pem(KEY_A)), ("b", &pem(KEY_B))])).unwrap()
}

fn id(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

#[test]
fn the_reference_vectors_verify() {
    let keys = keys();
    verify(&keys, "a", SIG_A, BODY_A).unwrap();
    verify(&keys, "b", SIG_B, BODY_B).unwrap();
    let signature = Signature::from_base64(SIG_A).unwrap();
    keys.get("a").unwrap().verify(&signature, BODY_A).unwrap();
}

#[test]
fn every_changed_byte_of_a_body_is_refused() {
    let keys = keys();
    for (key, signature, body) in [("a", SIG_A, BODY_A), ("b", SIG_B, BODY_B)] {
        for i in 0..body.len() {
            // One bit of each byte, a different one from byte to byte.
            let flip = 1 << (i % 8);
            let mut changed = body.to_vec();
            changed[i] ^= flip;
            let err = verify(&keys, key, signature, &changed).unwrap_err();
            assert!(
                matches!(&err, VerifyError::BadSignature { id } if id.as_str() == key),
                "byte {i} ^ {flip:#x}: {err:?}"
            );
        }
        // Re-serialized JSON is not the body: GitHub's key order, the trailing newline.
        let reserialized = serde_json::to_vec(&serde_json::from_slice::<Value>(body).unwrap());
        let mut newline = body.to_vec();
        newline.push(b'\n');
        for other in [
            reserialized.unwrap(),
            newline,
            body[..body.len() - 1].to_vec(),
        ] {
            if other != body {
                assert!(verify(&keys, key, signature, &other).is_err());
            }
        }
    }
}

#[test]
fn every_changed_byte_of_a_signature_is_refused() {
    let keys = keys();
    for (key, signature, body) in [("a", SIG_A, BODY_A), ("b", SIG_B, BODY_B)] {
        // Each character of the header: refused as malformed or as not matching.
        for i in 0..signature.len() {
            let mut changed = signature.as_bytes().to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(changed).unwrap();
            let err = verify(&keys, key, &changed, body).unwrap_err();
            assert!(
                matches!(
                    err,
                    VerifyError::BadSignature { .. } | VerifyError::MalformedSignature(_)
                ),
                "character {i}: {err:?}"
            );
        }
        // Each byte of the DER under it.
        let der = Base64::decode_vec(signature).unwrap();
        for i in 0..der.len() {
            let mut changed = der.clone();
            changed[i] ^= 0x01;
            let err = verify(&keys, key, &Base64::encode_string(&changed), body).unwrap_err();
            assert!(
                matches!(
                    err,
                    VerifyError::BadSignature { .. } | VerifyError::MalformedSignature(_)
                ),
                "DER byte {i}: {err:?}"
            );
        }
    }
}

#[test]
fn a_signature_is_refused_under_another_key() {
    let keys = keys();
    let err = verify(&keys, "b", SIG_A, BODY_A).unwrap_err();
    assert!(matches!(&err, VerifyError::BadSignature { id } if id.as_str() == "b"));
    assert!(err.to_string().contains("raw body bytes"), "{err}");
    let err = verify(&keys, "a", SIG_B, BODY_B).unwrap_err();
    assert!(matches!(&err, VerifyError::BadSignature { id } if id.as_str() == "a"));
}

#[test]
fn an_unknown_key_identifier_is_refused() {
    let keys = keys();
    let err = verify(&keys, "c", SIG_A, BODY_A).unwrap_err();
    assert!(matches!(&err, VerifyError::UnknownKey { id } if id.as_str() == "c"));
    let message = err.to_string();
    assert!(message.contains("no key c"), "{message}");
    assert!(message.contains("read it again"), "{message}");
    // Identifiers are compared exactly.
    assert!(matches!(
        verify(&keys, "A", SIG_A, BODY_A),
        Err(VerifyError::UnknownKey { .. })
    ));
}

#[test]
fn malformed_headers_are_refused_before_the_key_is_looked_up() {
    let keys = keys();
    let long_id = "k".repeat(257);
    for key_id in [
        "",
        "a b",
        "a\n",
        "a\r\nX-Injected: 1",
        "é",
        long_id.as_str(),
    ] {
        let err = verify(&keys, key_id, SIG_A, BODY_A).unwrap_err();
        assert!(
            matches!(err, VerifyError::MalformedKeyId(_)),
            "{key_id:?}: {err:?}"
        );
    }
    assert!(KeyId::new(&"k".repeat(256)).is_ok());

    let unpadded = SIG_A.trim_end_matches('=');
    let spaced = format!(" {SIG_A}");
    let url_safe = SIG_B.replace('+', "-").replace('/', "_");
    let raw = Base64::encode_string(&[7; 64]);
    let huge = "A".repeat(MIB);
    for signature in ["", "not base64!", unpadded, &spaced, &url_safe, &raw, &huge] {
        // An unknown key too: the header is refused first.
        let err = verify(&keys, "c", signature, BODY_A).unwrap_err();
        assert!(
            matches!(err, VerifyError::MalformedSignature(_)),
            "{signature:.40?}: {err:?}"
        );
        assert!(signature.parse::<Signature>().is_err());
    }
}

#[test]
fn errors_never_repeat_the_body_or_the_signature() {
    let keys = keys();
    let body = br#"[{"token":"dyn_secretsecret","type":"t"}]"#;
    let errors = [
        verify(&keys, "a", SIG_A, body).unwrap_err(),
        verify(&keys, "c", SIG_A, body).unwrap_err(),
        verify(&keys, "a", "bm90IGEgc2lnbmF0dXJl", body).unwrap_err(),
    ];
    for err in errors {
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("dyn_secretsecret"), "{shown}");
        assert!(!shown.contains(&SIG_A[..20]), "{shown}");
        assert!(!shown.contains("bm90"), "{shown}");
    }
}

#[test]
fn key_lists_are_read_as_documented() {
    let keys = keys();
    let ids: Vec<&str> = keys.iter().map(|key| key.id().as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(keys.get("c").is_none());

    // GitHub's shape exactly, with the ids GitHub uses (64 hex digits) and CRLF lines.
    let hex_id = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";
    let crlf = pem(KEY_A).replace('\n', "\r\n");
    let list = KeyList::from_json(&key_list_json(&[(hex_id, &crlf)])).unwrap();
    verify(&list, hex_id, SIG_A, BODY_A).unwrap();

    // Without the final newline, and with other fields.
    let bare = pem(KEY_B).trim_end().to_owned();
    let json = json!({"public_keys": [{"key_identifier": "x", "key": bare, "future": [1, {}]}], "etag": 1});
    let list = KeyList::from_json(json.to_string().as_bytes()).unwrap();
    verify(&list, "x", SIG_B, BODY_B).unwrap();

    // Built from keys directly.
    let key = ReportKey::from_pem(id("k"), &pem(KEY_A)).unwrap();
    assert_eq!(key.id().as_str(), "k");
    let list = KeyList::new([key]).unwrap();
    verify(&list, "k", SIG_A, BODY_A).unwrap();
}

#[test]
fn unusable_key_lists_are_refused() {
    let err = |json: &[u8]| KeyList::from_json(json).unwrap_err();

    for json in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        br#"{"public_keys": {}}"#,
        br#"{"public_keys": [{"key_identifier": "a"}]}"#,
        br#"{"public_keys": [{"key_identifier": 1, "key": "k"}]}"#,
        br#"{"public_keys": []} trailing"#,
    ] {
        let e = err(json);
        assert!(matches!(e, KeyListError::Malformed { .. }), "{e:?}");
    }
    assert!(matches!(
        err(br#"{"public_keys": []}"#),
        KeyListError::Empty
    ));
    let e = err(&key_list_json(&[("a", &pem(KEY_A)), ("a", &pem(KEY_B))]));
    assert!(matches!(&e, KeyListError::DuplicateKey { id } if id.as_str() == "a"));
    let e = err(&key_list_json(&[("a", &pem(KEY_A)), ("b c", &pem(KEY_B))]));
    assert!(
        matches!(e, KeyListError::InvalidKeyId { index: 1, .. }),
        "{e:?}"
    );

    let not_pem = KEY_A.to_owned();
    let truncated = pem(&KEY_A[..100]);
    for (name, key) in [
        ("p384", P384_PEM),
        ("ed25519", ED25519_PEM),
        ("not-pem", &not_pem),
        ("truncated", &truncated),
        ("empty", ""),
    ] {
        let e = err(&key_list_json(&[("a", &pem(KEY_A)), (name, key)]));
        assert!(
            matches!(&e, KeyListError::MalformedKey { id, .. } if id.as_str() == name),
            "{name}: {e:?}"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().contains("P-256"), "{e}");
    }

    // The JSON reader's message quotes values; ours gives the position only.
    let e = err(br#"{"public_keys": "hunter2"}"#);
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(matches!(e, KeyListError::Malformed { line: 1, .. }));
}

#[test]
fn keys_of_our_own_sign_and_verify() {
    let signing = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let keys = KeyList::from_json(&key_list_json(&[("ours", &pem_of(&signing))])).unwrap();
    let body = br#"[{"token":"dyn_x","type":"dynamic_api_token","url":""}]"#;
    let signature: p256::ecdsa::Signature = signing.sign(body);
    let header = Base64::encode_string(signature.to_der().as_bytes());
    verify(&keys, "ours", &header, body).unwrap();

    // The same signature with s replaced by n − s also verifies: P-256 signatures are not
    // normalized (GitHub's need not be low-S).
    let flipped = p256::ecdsa::Signature::from_scalars(signature.r(), -*signature.s()).unwrap();
    let header = Base64::encode_string(flipped.to_der().as_bytes());
    verify(&keys, "ours", &header, body).unwrap();
}

#[derive(Debug, Default)]
struct CountingSource {
    asked: AtomicUsize,
    fail: bool,
}

#[async_trait]
impl KeySource for CountingSource {
    async fn key(&self, id: &KeyId) -> Result<Option<ReportKey>, KeySourceError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        if self.fail {
            return Err(KeySourceError::Unavailable {
                source: "connection refused".into(),
            });
        }
        Ok(keys().get(id.as_str()).cloned())
    }
}

#[tokio::test]
async fn key_sources_answer_verify_with() {
    let source = StaticKeys::new(keys());
    verify_with(&source, "a", SIG_A, BODY_A).await.unwrap();
    assert!(matches!(
        verify_with(&source, "b", SIG_A, BODY_A).await,
        Err(VerifyError::BadSignature { .. })
    ));
    assert!(matches!(
        verify_with(&source, "c", SIG_A, BODY_A).await,
        Err(VerifyError::UnknownKey { .. })
    ));
    assert_eq!(source.keys().iter().count(), 2);

    // Object safe, and forwarded through Arc, Box and references.
    let shared: Arc<dyn KeySource> = Arc::new(StaticKeys::from(keys()));
    verify_with(&shared, "b", SIG_B, BODY_B).await.unwrap();
    verify_with(&*shared, "b", SIG_B, BODY_B).await.unwrap();
    let boxed: Box<dyn KeySource> = Box::new(source.clone());
    verify_with(&boxed, "a", SIG_A, BODY_A).await.unwrap();
    assert!(shared.key(&id("a")).await.unwrap().is_some());
    assert!(shared.key(&id("c")).await.unwrap().is_none());
}

#[tokio::test]
async fn malformed_headers_never_reach_the_key_source() {
    let source = CountingSource::default();
    for (key_id, signature) in [("", SIG_A), ("a b", SIG_A), ("a", ""), ("c", "!!")] {
        assert!(
            verify_with(&source, key_id, signature, BODY_A)
                .await
                .is_err()
        );
    }
    assert_eq!(source.asked.load(Ordering::Relaxed), 0);
    verify_with(&source, "a", SIG_A, BODY_A).await.unwrap();
    assert!(matches!(
        verify_with(&source, "c", SIG_A, BODY_A).await,
        Err(VerifyError::UnknownKey { .. })
    ));
    assert_eq!(source.asked.load(Ordering::Relaxed), 2);

    let failing = CountingSource {
        fail: true,
        ..CountingSource::default()
    };
    let err = verify_with(&failing, "a", SIG_A, BODY_A).await.unwrap_err();
    assert!(matches!(
        err,
        VerifyError::KeySource(KeySourceError::Unavailable { .. })
    ));
    assert!(err.to_string().contains("503"), "{err}");
}

#[test]
fn both_partners_reports_are_read() {
    let github = Report::from_json(BODY_A).unwrap();
    let [found] = github.matches() else {
        panic!("{github:?}")
    };
    assert_eq!(found.token().expose_secret(), "some_token");
    assert_eq!(found.kind(), "some_type");
    assert_eq!(found.url(), Some("https://example.com/base-repo-url/"));
    assert_eq!(found.source(), Some("commit"));

    let gitlab = Report::from_json(BODY_B).unwrap().into_matches();
    assert_eq!(gitlab.len(), 1);
    assert_eq!(gitlab[0].token().expose_secret(), "some_token");
    assert_eq!(gitlab[0].url(), Some("some_url"));
    assert_eq!(gitlab[0].source(), None);

    // Empty, null or missing `url` and `source` are absent; other fields are ignored;
    // escapes are decoded; an empty report is one with nothing to do.
    let report = Report::from_json(
        br#"[
            {"token": "t1", "type": "k", "url": "", "source": ""},
            {"token": "t\u0032", "type": "k", "url": null, "source": null, "new": {"x": [1]}},
            {"type": "k", "token": "t3"}
        ]"#,
    )
    .unwrap();
    let matches = report.matches();
    assert_eq!(matches.len(), 3);
    assert_eq!(matches[1].token().expose_secret(), "t2");
    assert!(
        matches
            .iter()
            .all(|m| m.url().is_none() && m.source().is_none())
    );
    assert!(Report::from_json(b" [ ] ").unwrap().matches().is_empty());
}

#[test]
fn leaked_tokens_stay_secret() {
    let report = Report::from_json(br#"[{"token":"dyn_secretsecret","type":"t"}]"#).unwrap();
    let shown = format!("{report:?}");
    assert!(!shown.contains("dyn_secretsecret"), "{shown}");
    assert!(shown.contains("LeakedToken(…)"), "{shown}");
}

#[test]
fn the_feedback_hash_is_lower_case_hex_sha256() {
    let report = Report::from_json(BODY_A).unwrap();
    // `printf some_token | sha256sum`
    assert_eq!(
        report.matches()[0].token().feedback_hash(),
        "9a45520a1213f15016d2d768b5fb3d904492a44ee274b44d4de8803e00fb536a"
    );
}

#[test]
fn malformed_reports_are_refused_with_their_kind() {
    let malformed = [
        &b""[..],
        b"not json",
        b"{}",
        br#"{"token":"t","type":"k"}"#,
        b"[1]",
        b"[[]]",
        br#"[{"type":"k"}]"#,
        br#"[{"token":"t"}]"#,
        br#"[{"token":5,"type":"k"}]"#,
        br#"[{"token":["t"],"type":"k"}]"#,
        br#"[{"token":"t","type":"k","url":5}]"#,
        br#"[{"token":"t","type":"k","source":{}}]"#,
        br#"[{"token":"t","token":"u","type":"k"}]"#,
        br#"[{"token":"t","type":"k"}] []"#,
        br#"[{"token":"t","type":"k"},]"#,
        b"[{\"token\":\"\xff\",\"type\":\"k\"}]",
        // A match is an object, not its fields in an array (serde's derive reads both;
        // found by fuzz/leak_report).
        br#"[["t","k"]]"#,
        br#"[["dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC","k","https://x","s"]]"#,
        br#"[{"token":"t","type":"k"},["t","k"]]"#,
        // An unpaired surrogate escape in a field the reader ignores (fuzz/leak_report).
        br#"[{"token":"t","other":"a\ud99dq","type":"k"}]"#,
        br#"[{"token":"t","type":"k","other":{"x":["\udc00z"]}}]"#,
    ];
    for body in malformed {
        let err = Report::from_json(body).unwrap_err();
        assert!(
            matches!(err, ReportError::Malformed { .. }),
            "{}: {err:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Invalid UTF-8 anywhere is not JSON, also in a field the reader ignores (found by
    // the leak_report fuzz target: serde_json skips such strings unchecked in a slice),
    // and the error says where.
    let err = Report::from_json(b"[{\"token\":\"t\",\"type\":\"k\",\n\"other\":\"ab\xff\"}]");
    assert_eq!(
        err.unwrap_err(),
        ReportError::Malformed {
            line: 2,
            column: 12
        }
    );
    let err = Report::from_json(br#"[{"token":"t","type":"k"},{"token":"","type":"k"}]"#);
    assert_eq!(err.unwrap_err(), ReportError::EmptyToken { index: 1 });

    // serde_json's own message would quote the value; ours does not.
    for body in [r#""dyn_secretsecret""#, r#"["dyn_secretsecret"]"#] {
        let theirs = serde_json::from_str::<Vec<u32>>(body).unwrap_err();
        assert!(theirs.to_string().contains("dyn_secretsecret"), "{theirs}");
        let err = Report::from_json(body.as_bytes()).unwrap_err();
        assert!(
            !format!("{err} {err:?}").contains("dyn_secretsecret"),
            "{err}"
        );
    }
    let err =
        Report::from_json(br#"[{"token":"dyn_secretsecret","type":"k","source":"#).unwrap_err();
    assert!(
        !format!("{err} {err:?}").contains("dyn_secretsecret"),
        "{err}"
    );
}

#[test]
fn the_limits_are_enforced_at_their_edges() {
    let matches = |n: usize| {
        let one = r#"{"token":"t","type":"k"}"#;
        format!("[{}]", vec![one; n].join(","))
    };
    assert_eq!(
        Report::from_json(matches(MAX_MATCHES).as_bytes())
            .unwrap()
            .matches()
            .len(),
        1_000
    );
    assert_eq!(
        Report::from_json(matches(MAX_MATCHES + 1).as_bytes()).unwrap_err(),
        ReportError::TooManyMatches
    );

    let padded = |len: usize| {
        let mut body = BODY_A.to_vec();
        body.resize(len, b' ');
        body
    };
    assert_eq!(MAX_REPORT_BYTES, MIB);
    assert!(Report::from_json(&padded(MIB)).is_ok());
    assert_eq!(
        Report::from_json(&padded(MIB + 1)).unwrap_err(),
        ReportError::TooLarge { len: MIB + 1 }
    );

    for field in [
        ReportField::Token,
        ReportField::Kind,
        ReportField::Url,
        ReportField::Source,
    ] {
        let body = |len: usize| {
            let mut doc = json!({"token": "t", "type": "k", "url": "u", "source": "s"});
            doc[field.name()] = json!("x".repeat(len));
            doc = json!([doc, doc]);
            serde_json::to_vec(&doc).unwrap()
        };
        assert!(Report::from_json(&body(field.max_len())).is_ok(), "{field}");
        let err = Report::from_json(&body(field.max_len() + 1)).unwrap_err();
        assert_eq!(err, ReportError::FieldTooLong { index: 0, field });
        assert!(
            err.to_string().contains(&field.max_len().to_string()),
            "{err}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_or_skipped_without_overflowing_the_stack() {
    let deep = "[".repeat(MIB);
    assert!(matches!(
        Report::from_json(deep.as_bytes()),
        Err(ReportError::Malformed { .. })
    ));
    let deep_objects = "{\"a\":".repeat(MIB / 5);
    assert!(Report::from_json(format!("[{deep_objects}").as_bytes()).is_err());
    // Nesting inside a field that is ignored, as deep as a body may hold: the body is
    // read whole as JSON first, so past serde_json's depth limit (128) it is malformed,
    // as it is for serde_json, without overflowing the stack.
    let depth = (MIB - 100) / 2;
    let body = format!(
        r#"[{{"token":"t","type":"k","extra":{}{}}}]"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(body.len() <= MIB);
    assert!(matches!(
        Report::from_json(body.as_bytes()),
        Err(ReportError::Malformed { .. })
    ));
    // Within the limit, an ignored field may nest.
    let body = format!(
        r#"[{{"token":"t","type":"k","extra":{}{}}}]"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let report = Report::from_json(body.as_bytes()).unwrap();
    assert_eq!(report.matches()[0].token().expose_secret(), "t");
    let closed = format!(
        r#"[{{"token":"t","type":"k","url":{}1{}}}]"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(Report::from_json(closed.as_bytes()).is_err());
}

/// Whether `value` is a report as documented: an array of at most `MAX_MATCHES` objects
/// with a non-empty string `token` and a string `type`, `url` and `source` absent, null or
/// strings, each within its limit.
fn is_valid_report(value: &Value) -> bool {
    let Value::Array(items) = value else {
        return false;
    };
    let string_within = |v: Option<&Value>, field: ReportField, optional: bool| match v {
        None | Some(Value::Null) => optional,
        Some(Value::String(s)) => s.len() <= field.max_len(),
        Some(_) => false,
    };
    items.len() <= MAX_MATCHES
        && items.iter().all(|item| {
            let Value::Object(m) = item else {
                return false;
            };
            matches!(m.get("token"), Some(Value::String(s)) if !s.is_empty())
                && string_within(m.get("token"), ReportField::Token, false)
                && string_within(m.get("type"), ReportField::Kind, false)
                && string_within(m.get("url"), ReportField::Url, true)
                && string_within(m.get("source"), ReportField::Source, true)
        })
}

/// Checks what any accepted report guarantees.
fn check_report(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(report) = Report::from_json(body) {
        prop_assert!(body.len() <= MAX_REPORT_BYTES);
        prop_assert!(report.matches().len() <= MAX_MATCHES);
        for found in report.matches() {
            let token = found.token().expose_secret();
            prop_assert!(!token.is_empty() && token.len() <= ReportField::Token.max_len());
            prop_assert!(found.kind().len() <= ReportField::Kind.max_len());
            prop_assert!(found.url().is_none_or(|url| !url.is_empty()));
            prop_assert!(found.source().is_none_or(|source| !source.is_empty()));
            prop_assert_eq!(found.token().feedback_hash().len(), 64);
        }
    }
    Ok(())
}

/// Any JSON value, its object keys often a report's.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("token".to_owned()),
        Just("type".to_owned()),
        Just("url".to_owned()),
        Just("source".to_owned()),
        "\\PC{0,6}",
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a match's field, around its limit, absent, or of another type.
fn field_value(field: ReportField) -> impl Strategy<Value = Option<Value>> {
    let max = field.max_len();
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!(""))),
        any::<i64>().prop_map(|n| Some(json!(n))),
        Just(Some(json!(["t"]))),
        Just(Some(json!({"token": "t"}))),
        "\\PC{1,16}".prop_map(|s| Some(Value::String(s))),
        (max - 1..=max + 1)
            .prop_map(|n| Some(Value::String("é".repeat(n / 2) + &"x".repeat(n % 2)))),
    ]
}

/// An array of match-shaped objects, each field valid or not.
fn match_shaped_report() -> impl Strategy<Value = Value> {
    let one = (
        field_value(ReportField::Token),
        field_value(ReportField::Kind),
        field_value(ReportField::Url),
        field_value(ReportField::Source),
        any::<bool>(),
    )
        .prop_map(|(token, kind, url, source, extra)| {
            let mut object = serde_json::Map::new();
            for (name, value) in [
                ("token", token),
                ("type", kind),
                ("url", url),
                ("source", source),
            ] {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            if extra {
                object.insert(
                    "new_field".to_owned(),
                    json!({"nested": [1, 2, {"a": null}]}),
                );
            }
            Value::Object(object)
        });
    vec(one, 0..4).prop_map(Value::Array)
}

proptest! {
    /// Arbitrary bytes: never a panic, and what is accepted keeps the limits.
    #[test]
    fn reports_never_panic_on_arbitrary_bytes(body in vec(any::<u8>(), 0..2048)) {
        check_report(&body)?;
    }

    /// The reference bodies with bytes changed, inserted or removed.
    #[test]
    fn reports_never_panic_on_near_valid_bodies(
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
        base in prop_oneof![Just(BODY_A), Just(BODY_B)],
    ) {
        let mut body = base.to_vec();
        for (at, byte, op) in edits {
            let i = at.index(body.len() + 1);
            match op {
                0 if i < body.len() => body[i] = byte,
                1 => body.insert(i, byte),
                _ if i < body.len() => { body.remove(i); }
                _ => {}
            }
        }
        check_report(&body)?;
    }

    /// Any JSON value is accepted exactly when it is a report as documented.
    #[test]
    fn any_json_value_is_read_as_documented(value in any_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        check_report(&body)?;
        prop_assert_eq!(Report::from_json(&body).is_ok(), is_valid_report(&value), "{}", value);
    }

    /// Match-shaped arrays, each field valid or not: accepted exactly when valid, and
    /// read back as written.
    #[test]
    fn match_shaped_reports_are_read_as_documented(value in match_shaped_report()) {
        let body = serde_json::to_vec(&value).unwrap();
        let read = Report::from_json(&body);
        prop_assert_eq!(read.is_ok(), is_valid_report(&value), "{}", value);
        if let Ok(report) = read {
            for (found, written) in report.matches().iter().zip(value.as_array().unwrap()) {
                prop_assert_eq!(Some(found.token().expose_secret()), written["token"].as_str());
                prop_assert_eq!(Some(found.kind()), written["type"].as_str());
                prop_assert_eq!(found.url(), written["url"].as_str().filter(|s| !s.is_empty()));
                prop_assert_eq!(
                    found.source(),
                    written["source"].as_str().filter(|s| !s.is_empty())
                );
            }
        }
    }

    /// Key lists and signatures on arbitrary input: never a panic, and never a valid
    /// signature by chance.
    #[test]
    fn keys_and_signatures_never_panic(
        bytes in vec(any::<u8>(), 0..512),
        key_id in "\\PC{0,8}",
        signature in prop_oneof!["[A-Za-z0-9+/=]{0,120}", "\\PC{0,100}"],
    ) {
        let _ = KeyList::from_json(&bytes);
        let _ = Signature::from_base64(&signature);
        let _ = KeyId::new(&key_id);
        prop_assert!(verify(&keys(), &key_id, &signature, &bytes).is_err());
        prop_assert!(verify(&keys(), "a", &signature, BODY_A).is_err() || signature == SIG_A);
    }

    /// Key-list-shaped JSON with arbitrary values.
    #[test]
    fn key_list_shaped_json_never_panics(value in any_json(), pem_like in "[A-Za-z0-9+/=\n-]{0,200}") {
        let _ = KeyList::from_json(&serde_json::to_vec(&json!({"public_keys": [value]})).unwrap());
        let list = key_list_json(&[("a", &format!("-----BEGIN PUBLIC KEY-----\n{pem_like}\n-----END PUBLIC KEY-----"))]);
        let _ = KeyList::from_json(&list);
    }
}

proptest! {
    // Signing and verifying cost milliseconds each in a debug build.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A key of our own signs any body; the signature verifies over that body only.
    #[test]
    fn signed_bodies_verify_and_changed_ones_do_not(
        secret in any::<[u8; 32]>(),
        body in vec(any::<u8>(), 0..256),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let Ok(signing) = SigningKey::from_slice(&secret) else {
            return Ok(()); // zero or not below the group order: not a key
        };
        let ours = pem_of(&signing);
        let keys = KeyList::from_json(&key_list_json(&[("k", &ours), ("a", &pem(KEY_A))])).unwrap();
        let signature: p256::ecdsa::Signature = signing.sign(&body);
        let header = Base64::encode_string(signature.to_der().as_bytes());
        prop_assert!(verify(&keys, "k", &header, &body).is_ok());
        let refused = verify(&keys, "a", &header, &body);
        prop_assert!(matches!(refused, Err(VerifyError::BadSignature { .. })), "{:?}", refused);
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[at.index(body.len())] ^= flip;
            let refused = verify(&keys, "k", &header, &changed);
            prop_assert!(matches!(refused, Err(VerifyError::BadSignature { .. })), "{:?}", refused);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Around 1,000 matches: accepted up to the limit, refused past it.
    #[test]
    fn the_match_limit_holds(n in MAX_MATCHES - 5..MAX_MATCHES + 5) {
        let body = serde_json::to_vec(&vec![json!({"token": "t", "type": "k"}); n]).unwrap();
        match Report::from_json(&body) {
            Ok(report) => prop_assert!(n <= MAX_MATCHES && report.matches().len() == n),
            Err(err) => prop_assert!(n > MAX_MATCHES && err == ReportError::TooManyMatches),
        }
    }

    /// Around 1 MiB of body: accepted up to the limit, refused past it, whatever it holds.
    #[test]
    fn the_size_limit_holds(len in MIB - 3..MIB + 3, filler in prop_oneof![Just(b' '), any::<u8>()]) {
        let mut body = BODY_A.to_vec();
        body.resize(len, filler);
        let read = Report::from_json(&body);
        if len > MAX_REPORT_BYTES {
            prop_assert_eq!(read.unwrap_err(), ReportError::TooLarge { len });
        } else if filler == b' ' {
            prop_assert!(read.is_ok());
        }
    }
}
