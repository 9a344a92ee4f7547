//! Reading a report: [`Report`], [`Match`], [`LeakedToken`].

use core::fmt;
use serde::Deserializer as _;
use serde::de::{self, Deserialize, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// The largest report body read, in bytes (1 MiB).
pub const MAX_REPORT_BYTES: usize = 1 << 20;

/// The most matches one report may hold.
pub const MAX_MATCHES: usize = 1_000;

/// A partner's report: the matches of your tokens it found.
///
/// GitHub sends `[{"token", "type", "url", "source"}]`, GitLab
/// `[{"token", "type", "url"}]`; both are read by [`Report::from_json`]. Read a report
/// only once [`verify`](super::verify) has accepted its body.
#[derive(Debug)]
pub struct Report {
    matches: Vec<Match>,
}

impl Report {
    /// Reads a report body. Fields other than the four above are ignored (partners add
    /// fields over time); `url` and `source` may be missing, `null` or empty.
    ///
    /// Any input is safe: nothing panics, and reading never recurses deeper than 128
    /// levels (ignored fields are skipped without recursion). Invalid JSON, values of the
    /// wrong type and long strings are errors, and reading stops at the first match past
    /// [`MAX_MATCHES`].
    ///
    /// # Errors
    ///
    /// See [`ReportError`]; its messages never contain the body.
    pub fn from_json(body: &[u8]) -> Result<Report, ReportError> {
        if body.len() > MAX_REPORT_BYTES {
            return Err(ReportError::TooLarge { len: body.len() });
        }
        // JSON is UTF-8 (RFC 8259 §8.1). Checked whole and first: reading from a slice,
        // serde_json skips the strings of ignored fields without checking them.
        let body = core::str::from_utf8(body).map_err(|e| {
            let (line, column) = position(body, e.valid_up_to());
            ReportError::Malformed { line, column }
        })?;
        // Then read whole as JSON, keeping nothing: serde_json checks less in what a typed
        // read skips (an unpaired `\ud800` escape in an ignored field passed), and a body
        // is a report only if it is JSON throughout.
        let mut check = serde_json::Deserializer::from_str(body);
        Checked::deserialize(&mut check)
            .and_then(|Checked| check.end())
            .map_err(|err| ReportError::Malformed {
                line: err.line(),
                column: err.column(),
            })?;
        let mut failure = None;
        let mut de = serde_json::Deserializer::from_str(body);
        let read = (&mut de)
            .deserialize_seq(Matches {
                failure: &mut failure,
            })
            .and_then(|matches| de.end().map(|()| matches));
        match (read, failure) {
            (_, Some(failure)) => Err(failure),
            (Ok(matches), None) => Ok(Report { matches }),
            // serde_json's message would quote the input; its position is enough to find it.
            (Err(err), None) => Err(ReportError::Malformed {
                line: err.line(),
                column: err.column(),
            }),
        }
    }

    /// The matches, in the report's order.
    pub fn matches(&self) -> &[Match] {
        &self.matches
    }

    /// The matches, in the report's order, to keep.
    pub fn into_matches(self) -> Vec<Match> {
        self.matches
    }
}

/// The line and column, counted from 1, of byte `at` of `body` (columns in bytes, as
/// serde_json counts them).
fn position(body: &[u8], at: usize) -> (usize, usize) {
    let before = body.get(..at).unwrap_or(body);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1)
        + 1;
    (line, column)
}

/// Reads the array, checking each match as it arrives, so that reading stops at the first
/// match too many, and keeps the typed error that serde would flatten to a string.
struct Matches<'a> {
    failure: &'a mut Option<ReportError>,
}

impl<'de> Visitor<'de> for Matches<'_> {
    type Value = Vec<Match>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of matches")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Match>, A::Error> {
        let mut matches = Vec::new();
        while let Some(ObjectMatch(wire)) = seq.next_element::<ObjectMatch>()? {
            let index = matches.len();
            let checked = if index == MAX_MATCHES {
                Err(ReportError::TooManyMatches)
            } else {
                Match::new(wire, index)
            };
            match checked {
                Ok(found) => matches.push(found),
                Err(failure) => {
                    *self.failure = Some(failure);
                    return Err(de::Error::custom("see the failure"));
                }
            }
        }
        Ok(matches)
    }
}

#[derive(serde::Deserialize)]
struct WireMatch {
    // Wrapped as soon as it is read, so that it is wiped even when a later field fails.
    #[serde(deserialize_with = "leaked_token")]
    token: LeakedToken,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// Any JSON value, read in full and dropped: every string is parsed (escapes, surrogate
/// pairs), where serde_json's skipping of ignored values only looks for their end.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// A match read only from a JSON object. serde's derive also reads a struct from an
/// array of its fields in order (`[["dyn_…", "type"]]` was a report of one match), which
/// no partner sends and the documented format does not allow.
struct ObjectMatch(WireMatch);

impl<'de> Deserialize<'de> for ObjectMatch {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<ObjectMatch, D::Error> {
        WireMatch::deserialize(MapOnly(d)).map(ObjectMatch)
    }
}

/// A deserializer that reads whatever is asked of it as a map, so that anything but an
/// object is the inner deserializer's "invalid type" error.
struct MapOnly<D>(D);

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for MapOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

fn leaked_token<'de, D: de::Deserializer<'de>>(d: D) -> Result<LeakedToken, D::Error> {
    String::deserialize(d).map(LeakedToken)
}

/// One leaked token a partner found.
///
/// GitHub's agreement allows the match data to be used only to verify, revoke or notify,
/// and requires `url`, `source` and `type` to be deleted within 30 days of acting on them.
#[derive(Debug)]
pub struct Match {
    token: LeakedToken,
    kind: String,
    url: Option<String>,
    source: Option<String>,
}

impl Match {
    fn new(wire: WireMatch, index: usize) -> Result<Match, ReportError> {
        let WireMatch {
            token,
            kind,
            url,
            source,
        } = wire;
        if token.0.is_empty() {
            return Err(ReportError::EmptyToken { index });
        }
        let fields = [
            (ReportField::Token, token.0.len()),
            (ReportField::Kind, kind.len()),
            (ReportField::Url, url.as_ref().map_or(0, String::len)),
            (ReportField::Source, source.as_ref().map_or(0, String::len)),
        ];
        if let Some(&(field, _)) = fields.iter().find(|(field, len)| *len > field.max_len()) {
            return Err(ReportError::FieldTooLong { index, field });
        }
        Ok(Match {
            token,
            kind,
            url: url.filter(|url| !url.is_empty()),
            source: source.filter(|source| !source.is_empty()),
        })
    }

    /// The token found.
    pub fn token(&self) -> &LeakedToken {
        &self.token
    }

    /// The partner's name for the kind of token (`type` in the report): the pattern that
    /// matched, as registered with the partner.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Where the token was found, when the partner says (GitHub's `url` may be empty).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// What the token was found in (GitHub's `source`: `Content`, `Commit`, `Npm`,
    /// `Unknown` and more, in varying letter case; the list grows, so expect any value).
    /// GitLab does not send one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }
}

/// A token as a partner reported it: any string, perhaps not of your format at all.
///
/// Like [`RawToken`](crate::RawToken) it is a secret: wiped from memory when dropped,
/// redacted in `Debug`, without `Display`, `Clone` or `Serialize`;
/// [`LeakedToken::expose_secret`] is the one way to read it. (The body it was read from,
/// and the JSON reader's scratch space when the string held escapes, are not wiped: the
/// body is the caller's.)
pub struct LeakedToken(String);

impl LeakedToken {
    /// The token, as reported: the one way to read it. Parse it with
    /// [`TokenFormat::parse`](crate::TokenFormat::parse) to act on it; never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// GitHub's `token_hash` for the feedback it accepts about a report: SHA-256 of the
    /// token as reported, in lower-case hexadecimal (GitHub does not document the
    /// encoding; hex is the usual one).
    ///
    /// ```
    /// use apitoken::leak::Report;
    ///
    /// let report = Report::from_json(br#"[{"token":"some_token","type":"some_type"}]"#)?;
    /// assert_eq!(
    ///     report.matches()[0].token().feedback_hash(),
    ///     "9a45520a1213f15016d2d768b5fb3d904492a44ee274b44d4de8803e00fb536a",
    /// );
    /// # Ok::<(), apitoken::leak::ReportError>(())
    /// ```
    pub fn feedback_hash(&self) -> String {
        base16ct::lower::encode_string(&Sha256::digest(self.0.as_bytes()))
    }
}

impl Drop for LeakedToken {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for LeakedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeakedToken(…)")
    }
}

/// A field of a match, and the longest value read for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportField {
    /// `token`: at most 1,024 bytes, far beyond any token format.
    Token,
    /// `type`: at most 256 bytes.
    Kind,
    /// `url`: at most 8,192 bytes.
    Url,
    /// `source`: at most 256 bytes.
    Source,
}

impl ReportField {
    /// The field's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            ReportField::Token => "token",
            ReportField::Kind => "type",
            ReportField::Url => "url",
            ReportField::Source => "source",
        }
    }

    /// The longest value read for the field, in bytes.
    pub fn max_len(self) -> usize {
        match self {
            ReportField::Token => 1_024,
            ReportField::Kind | ReportField::Source => 256,
            ReportField::Url => 8_192,
        }
    }
}

impl fmt::Display for ReportField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a report body cannot be read.
///
/// A partner never sends such a body, so refuse it (400). The messages never contain the
/// body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The body is longer than [`MAX_REPORT_BYTES`].
    #[error(
        "the report body is {len} bytes, more than the {MAX_REPORT_BYTES} read: refuse it (stop reading a request body at that size)"
    )]
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The body holds more than [`MAX_MATCHES`] matches.
    #[error("the report holds more than {MAX_MATCHES} matches: refuse it")]
    TooManyMatches,
    /// Not a JSON array of matches (invalid JSON, another shape, a missing `token` or
    /// `type`, a value of the wrong type, nesting deeper than 128).
    #[error(
        "the report is not a JSON array of matches {{\"token\": …, \"type\": …, \"url\": …}} (at line {line}, column {column}): refuse it"
    )]
    Malformed {
        /// Where reading stopped, counted from 1.
        line: usize,
        /// Where reading stopped in that line, counted from 1.
        column: usize,
    },
    /// A match's token is empty.
    #[error("match {index} of the report (counted from 0) has an empty token: refuse the report")]
    EmptyToken {
        /// The match, counted from 0.
        index: usize,
    },
    /// A field of a match is longer than [`ReportField::max_len`].
    #[error(
        "the `{field}` of match {index} of the report (counted from 0) is longer than {} bytes: refuse the report",
        field.max_len()
    )]
    FieldTooLong {
        /// The match, counted from 0.
        index: usize,
        /// The field.
        field: ReportField,
    },
}
