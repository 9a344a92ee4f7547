//! Leak intake: checking and reading the reports that secret-scanning partners (GitHub,
//! GitLab) send when they find one of your tokens in public code.
//!
//! A partner `POST`s a JSON array of matches and signs the **raw body bytes** with ECDSA
//! over P-256 and SHA-256. Two headers carry the signature: the identifier of the
//! partner's key (`Github-Public-Key-Identifier`, `Gitlab-Public-Key-Identifier`) and the
//! signature itself, standard base64 of ASN.1 DER (`Github-Public-Key-Signature`,
//! `Gitlab-Public-Key-Signature`); header names arrive in varying letter case. The
//! partner publishes its keys as a JSON key list ([`KeyList::from_json`]).
//!
//! Handling a report, in this order:
//!
//! 1. Keep the body exactly as received, and stop reading past [`MAX_REPORT_BYTES`].
//! 2. [`verify`] it (or [`verify_with`] a [`KeySource`]) before reading anything in it:
//!    an unsigned report is anyone's.
//! 3. Read it with [`Report::from_json`]: each [`Match`] holds the [`LeakedToken`], the
//!    partner's token type, and where it was found.
//! 4. Act on each match, then answer 2xx, also for tokens that are unknown, foreign or
//!    already revoked: GitLab resends every report answered with 400 or more, and GitHub
//!    expects an answer within 15 seconds.
//! 5. Optionally, tell GitHub what you found, with [`LeakedToken::feedback_hash`].
//!
//! Step 4 is [`TokenIssuer::revoke_leaks`](crate::TokenIssuer::revoke_leaks): give it each
//! match's token with a [`LeakDetails`](crate::LeakDetails) built from the match (reporter,
//! source, URL, type), and it revokes the live ones, logs each as a `Leaked` event and
//! says what each string was, which is the feedback GitHub asks for.
//!
//! The rest of this module is pure: it neither fetches keys nor revokes tokens. It needs
//! the feature `leak` (not a default one: the signature check's crates add about 30 s to a
//! build).
//! The feature `leak-fetch` adds `FetchedKeys`, a [`KeySource`] that fetches the partner's
//! key list over HTTPS (with `reqwest`), and keeps it as the [`KeySource`] contract says.
//!
//! ```
//! use apitoken::leak::{KeyList, Report, VerifyError, verify};
//!
//! // The example of GitHub's documentation. The key identifier is the key list's choice.
//! let keys = KeyList::from_json(br#"{"public_keys": [{
//!     "key_identifier": "vector-a",
//!     "key": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAd\nAjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==\n-----END PUBLIC KEY-----\n",
//!     "is_current": true
//! }]}"#)?;
//! let body = br#"[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]"#;
//! let signature = "MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66YcAdjxji410VQV4xg==";
//!
//! verify(&keys, "vector-a", signature, body)?;
//! let report = Report::from_json(body)?;
//! let [leak] = report.matches() else { panic!("one match") };
//! assert_eq!(leak.token().expose_secret(), "some_token");
//! assert_eq!(leak.kind(), "some_type");
//! assert_eq!(leak.url(), Some("https://example.com/base-repo-url/"));
//! assert_eq!(leak.source(), Some("commit"));
//!
//! // Anything else is refused, and the error says what to do.
//! let forged = br#"[{"source":"commit","token":"other_token","type":"some_type","url":""}]"#;
//! let refused = verify(&keys, "vector-a", signature, forged).unwrap_err();
//! assert!(matches!(refused, VerifyError::BadSignature { .. }));
//! let unknown = verify(&keys, "vector-b", signature, body).unwrap_err();
//! assert!(matches!(unknown, VerifyError::UnknownKey { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "leak-fetch")]
mod fetch;
mod key;
mod report;
mod source;
mod verify;

#[cfg(feature = "leak-fetch")]
pub use fetch::{
    FetchConfigError, FetchedKeys, FetchedKeysBuilder, GITHUB_KEYS_URL, MAX_KEY_LIST_BYTES,
};
pub use key::{InvalidKeyId, KeyId, KeyList, KeyListError, MAX_KEY_ID_LEN, ReportKey};
pub use report::{
    LeakedToken, MAX_MATCHES, MAX_REPORT_BYTES, Match, Report, ReportError, ReportField,
};
pub use source::{KeySource, KeySourceError, StaticKeys};
pub use verify::{MalformedSignature, Signature, VerifyError, verify, verify_with};
