//! Finding and redacting tokens in text: leak response for logs, source files, dumps.
//!
//! A *finding* is `{prefix}_` followed by exactly [`TokenFormat::body_len`] ASCII letters
//! and digits whose last 6 are the valid checksum of the rest, in the format's digit
//! order. The byte before the prefix must not be a letter, a digit or `_` (`xdyn_…` is
//! not a token), and the byte after the token must not be a letter or a digit (a longer
//! run is not a token). Look-alikes with a wrong checksum are not reported, so a finding
//! is almost surely a real token: a random 36-character string passes the checksum with
//! probability 2⁻³².
//!
//! The input is bytes: invalid UTF-8 and binary data are fine. The scan is linear in the
//! input and allocates nothing.
//!
//! ```
//! use apitoken::TokenFormat;
//! use apitoken::scan::{redact, scan};
//!
//! let format = TokenFormat::dynamic();
//! let log = "GET /v1?token=dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC&x=1 (dyn_notAToken)";
//!
//! let found: Vec<_> = scan(&format, log.as_bytes()).collect();
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].offset, 14);
//! assert_eq!(found[0].checksum.as_str(), "4n3LFC");
//!
//! assert_eq!(redact(&format, log), "GET /v1?token=dyn_…4n3LFC&x=1 (dyn_notAToken)");
//! ```

use crate::format::{Checksum, TokenFormat};
use core::fmt;
use core::iter::FusedIterator;
use core::ops::Range;
use std::borrow::Cow;

/// One token found in text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Byte offset of the token's first byte (the first byte of its prefix).
    pub offset: usize,
    /// Length of the token in bytes ([`TokenFormat::token_len`]).
    pub len: usize,
    /// The token's checksum: it names the token without revealing it.
    pub checksum: Checksum,
}

impl Finding {
    /// The token's bytes in the scanned text.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// Finds the tokens of `format` in `text`, in order of position.
///
/// See the [module documentation](self) for what counts as a token.
pub fn scan<'a>(format: &'a TokenFormat, text: &'a [u8]) -> Findings<'a> {
    let prefix = format.prefix().as_bytes();
    Findings {
        format,
        text,
        prefix,
        first: prefix.first().copied().unwrap_or(b'_'),
        next_block: prefix.len(),
        base: 0,
        mask: 0,
    }
}

/// Replaces each token of `format` found in `text` with its prefix, `_…` and its checksum
/// (`dyn_…4n3LFC`), for log pipelines. Returns `text` itself when it holds no token.
///
/// Redacting twice changes nothing more: the redacted form is not a token.
pub fn redact<'a>(format: &TokenFormat, text: &'a str) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for finding in scan(format, text.as_bytes()) {
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        // Tokens are ASCII, so their bounds are character boundaries.
        out.push_str(text.get(copied..finding.offset).unwrap_or_default());
        out.push_str(format.prefix());
        out.push_str("_…");
        out.push_str(finding.checksum.as_str());
        copied = finding.offset + finding.len;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(text.get(copied..).unwrap_or_default());
            Cow::Owned(out)
        }
    }
}

/// Candidate positions are examined in blocks of this many bytes: one bit of a `u64` each.
const BLOCK: usize = 64;

/// The iterator [`scan`] returns.
///
/// How it works: a token's `_` stands exactly `prefix.len()` bytes after the prefix's
/// first byte, so the scan looks for that pair of bytes, 64 positions at a time with a
/// branch-free comparison that the compiler vectorizes. Only the rare positions where the
/// pair occurs are checked in full (prefix, boundaries, length of the letter-and-digit
/// run, checksum); each check stops at the first byte that is not a letter or digit, so
/// no byte is examined more than a bounded number of times.
#[derive(Clone)]
pub struct Findings<'a> {
    format: &'a TokenFormat,
    text: &'a [u8],
    prefix: &'a [u8],
    /// The prefix's first byte.
    first: u8,
    /// The position of the first `_` candidate not yet loaded into `mask`.
    next_block: usize,
    /// The position of bit 0 of `mask`.
    base: usize,
    /// Candidate `_` positions in the current block not yet checked.
    mask: u64,
}

/// Shows the format and the progress, never the text (which holds the tokens).
impl fmt::Debug for Findings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Findings")
            .field("format", self.format)
            .field("text_len", &self.text.len())
            .field("next_block", &self.next_block)
            .finish_non_exhaustive()
    }
}

impl Findings<'_> {
    /// Loads the next block that holds a candidate into `mask`; false at the end.
    fn refill(&mut self) -> bool {
        let text = self.text;
        let lag = self.prefix.len();
        let first = self.first;
        let mut start = self.next_block;
        // `start >= lag` always holds, so `start - lag` never wraps.
        while let (Some(here), Some(back)) = (
            text.get(start..start + BLOCK),
            text.get(start - lag..start - lag + BLOCK),
        ) {
            if any_pair(here, back, first) {
                self.base = start;
                self.mask = pair_mask(here, back, first);
                self.next_block = start + BLOCK;
                return true;
            }
            start += BLOCK;
        }
        // The last, short block.
        self.next_block = usize::MAX;
        match (text.get(start..), text.get(start - lag..)) {
            (Some(here), Some(back)) if !here.is_empty() => {
                self.base = start;
                self.mask = pair_mask(here, back, first);
                true
            }
            _ => false,
        }
    }

    /// The token whose `_` is at `underscore`, if there is one.
    fn check(&self, underscore: usize) -> Option<Finding> {
        let text = self.text;
        let start = underscore - self.prefix.len();
        if text.get(start..underscore)? != self.prefix {
            return None;
        }
        if let Some(before) = start.checked_sub(1).and_then(|i| text.get(i))
            && (before.is_ascii_alphanumeric() || *before == b'_')
        {
            return None;
        }
        let body_start = underscore + 1;
        let end = body_start + self.format.body_len();
        let body = text.get(body_start..end)?;
        if !body.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        if text.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            return None;
        }
        let (random, found) = body.split_at(self.format.random_len());
        let checksum = Checksum::compute(random, self.format.alphabet());
        (checksum.as_bytes() == found).then_some(Finding {
            offset: start,
            len: end - start,
            checksum,
        })
    }
}

impl Iterator for Findings<'_> {
    type Item = Finding;

    fn next(&mut self) -> Option<Finding> {
        loop {
            while self.mask != 0 {
                let bit = self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                if let Some(finding) = self.check(self.base + bit) {
                    return Some(finding);
                }
            }
            if self.next_block == usize::MAX || !self.refill() {
                self.next_block = usize::MAX;
                return None;
            }
        }
    }
}

impl FusedIterator for Findings<'_> {}

/// Whether some `here[k]` is `_` while `back[k]` is the prefix's first byte. No early
/// exit, so that it compiles to a few vector instructions.
#[inline(always)]
fn any_pair(here: &[u8], back: &[u8], first: u8) -> bool {
    here.iter().zip(back).fold(0u8, |acc, (&h, &b)| {
        acc | (u8::from(h == b'_') & u8::from(b == first))
    }) != 0
}

/// Bit `k` set where `here[k]` is `_` and `back[k]` is the prefix's first byte.
fn pair_mask(here: &[u8], back: &[u8], first: u8) -> u64 {
    here.iter()
        .zip(back)
        .take(BLOCK)
        .enumerate()
        .fold(0u64, |mask, (k, (&h, &b))| {
            mask | (u64::from((h == b'_') & (b == first)) << k)
        })
}
