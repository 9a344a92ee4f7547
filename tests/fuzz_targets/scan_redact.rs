//! `scan_redact`: `scan` and `redact` on arbitrary bytes, under every format.
//!
//! `scan` must report exactly the findings of a naive scan (every position, checked in
//! full against the reference rules): so findings are in bounds, in order, do not
//! overlap, and each is a token the format parses. `redact` must replace exactly those,
//! leave no finding's random part behind, leave nothing for a second scan to find, and
//! change nothing when redacting again.

use super::{formats, reference};
use apitoken::TokenFormat;
use apitoken::scan::{Finding, redact, scan};
use std::borrow::Cow;

pub(crate) fn scan_redact(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for format in formats() {
        check_scan(&format, data);
        if let Cow::Owned(text) = &text {
            // Invalid UTF-8 was replaced: scan the text `redact` sees too.
            check_scan(&format, text.as_bytes());
        }
        check_redact(&format, &text);
    }
}

/// Where a token of `format` starts, by brute force.
fn naive_scan(format: &TokenFormat, text: &[u8]) -> Vec<(usize, usize)> {
    let len = format.token_len();
    (0..text.len())
        .filter(|&i| {
            let before_ok = i
                .checked_sub(1)
                .is_none_or(|b| !(text[b].is_ascii_alphanumeric() || text[b] == b'_'));
            let after_ok = text.get(i + len).is_none_or(|b| !b.is_ascii_alphanumeric());
            before_ok
                && after_ok
                && text
                    .get(i..i + len)
                    .is_some_and(|t| reference::is_token(format, t))
        })
        .map(|i| (i, len))
        .collect()
}

fn check_scan(format: &TokenFormat, text: &[u8]) -> Vec<Finding> {
    let mut findings = scan(format, text);
    let found: Vec<Finding> = findings.by_ref().collect();
    assert_eq!(findings.next(), None, "not fused");
    let expected = naive_scan(format, text);
    let got: Vec<(usize, usize)> = found.iter().map(|f| (f.offset, f.len)).collect();
    assert_eq!(
        got, expected,
        "{format:?}: scan differs from the naive scan"
    );
    let mut end = 0;
    for finding in &found {
        assert!(
            finding.offset >= end,
            "findings overlap or are out of order"
        );
        end = finding.range().end;
        assert!(end <= text.len(), "a finding is out of bounds");
        let token = std::str::from_utf8(&text[finding.range()]).expect("tokens are ASCII");
        let parsed = format
            .parse(token)
            .unwrap_or_else(|e| panic!("{format:?}: a finding does not parse: {e}"));
        assert_eq!(parsed.checksum(), finding.checksum);
    }
    found
}

fn check_redact(format: &TokenFormat, text: &str) {
    let findings: Vec<Finding> = scan(format, text.as_bytes()).collect();
    let redacted = redact(format, text);
    if findings.is_empty() {
        assert!(
            matches!(redacted, Cow::Borrowed(t) if t == text),
            "text without tokens was changed"
        );
        return;
    }

    // What it must be: each finding replaced by `{prefix}_…{checksum}`; and the text
    // with each finding masked out, to tell a leak from a copy found elsewhere.
    let mut expected = String::new();
    let mut masked = String::new();
    let mut copied = 0;
    for finding in &findings {
        expected.push_str(&text[copied..finding.offset]);
        masked.push_str(&text[copied..finding.offset]);
        expected.push_str(&format!("{}_…{}", format.prefix(), finding.checksum));
        masked.push('\0');
        copied = finding.range().end;
    }
    expected.push_str(&text[copied..]);
    masked.push_str(&text[copied..]);
    assert_eq!(redacted, expected);

    for finding in &findings {
        let random = reference::random_part(format, &text[finding.range()]);
        if !masked.contains(random) {
            assert!(!redacted.contains(random), "redact left a secret behind");
        }
    }
    assert_eq!(
        scan(format, redacted.as_bytes()).count(),
        0,
        "the redacted text still holds tokens"
    );
    assert!(
        matches!(redact(format, &redacted), Cow::Borrowed(_)),
        "redacting twice changed something"
    );
}
