//! Ids in request paths.

use uuid::Uuid;

/// The UUID a path segment holds, in its one canonical form only: 36 characters,
/// lower-case hexadecimal in groups of 8-4-4-4-12 joined by hyphens, as this library
/// prints ids. Upper case, braces, `urn:uuid:` and the unhyphenated form are refused, so
/// that a token or an environment has one URL: caches, access logs and a proxy's path
/// rules never see it under two names.
///
/// ```
/// use apitoken::http::canonical_uuid;
///
/// assert!(canonical_uuid("0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d").is_some());
/// assert!(canonical_uuid("0190A5C4-7D3E-7B5A-9C1D-2E3F4A5B6C7D").is_none());
/// assert!(canonical_uuid("0190a5c47d3e7b5a9c1d2e3f4a5b6c7d").is_none());
/// assert!(canonical_uuid("{0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d}").is_none());
/// ```
pub fn canonical_uuid(segment: &str) -> Option<Uuid> {
    let bytes = segment.as_bytes();
    let canonical = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        });
    canonical.then(|| Uuid::try_parse(segment).ok()).flatten()
}
