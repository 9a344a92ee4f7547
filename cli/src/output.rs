//! Rendering for people: tables, times, statuses.

use apitoken::{Creator, Scopes, Token};
use chrono::{DateTime, SecondsFormat, Utc};
use unicode_width::UnicodeWidthStr as _;

// The layout is ours (about 40 lines); the widths are `unicode-width`'s: a note may hold
// CJK or emoji, two columns wide each, which counting characters misaligned. A table
// crate renders a whole table at once, where `events --follow` prints rows as they
// arrive under a header printed first. Measured with `cargo tree`: comfy-table 8.0.1
// brings 16 crates with its default features (crossterm, parking_lot, rustix, …) and 3
// without (itself, unicode-segmentation, unicode-width), for the same two-space layout.

/// How many terminal columns `text` takes.
fn width(text: &str) -> usize {
    text.width()
}

/// A token as people name it: prefix, ellipsis, checksum (`dyn_…4n3LFC`).
pub(crate) fn token_name(prefix: &str, token: &Token) -> String {
    format!("{prefix}_…{}", token.checksum)
}

/// Whether a token authenticates now.
pub(crate) fn status(token: &Token, now: DateTime<Utc>) -> &'static str {
    if !token.active {
        "revoked"
    } else if !token.is_live_at(now) {
        "expired"
    } else {
        "active"
    }
}

/// A time to the minute, for tables (UTC).
pub(crate) fn minute(at: Option<DateTime<Utc>>, none: &str) -> String {
    at.map_or_else(
        || none.to_owned(),
        |at| at.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// A time in RFC 3339 (UTC, `Z`), as in the JSON.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A time to the second in RFC 3339 (UTC, `Z`): always 20 characters, so that a table
/// printed row by row stays aligned.
pub(crate) fn second(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Scopes comma-separated, or `none`.
pub(crate) fn scopes(scopes: &Scopes) -> String {
    if scopes.is_empty() {
        return "none".to_owned();
    }
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The creator's id, with the names recorded for it.
pub(crate) fn creator(creator: &Creator) -> String {
    let names: Vec<&str> = [
        creator.alias.as_deref(),
        creator.first_name.as_deref(),
        creator.last_name.as_deref(),
        creator.email.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if names.is_empty() {
        creator.id.to_string()
    } else {
        format!("{} ({})", creator.id, names.join(", "))
    }
}

/// Cuts `text` to at most `max` terminal columns, marking the cut with `…`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = width(c.encode_utf8(&mut [0; 4]));
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Columns padded to their widest cell (in terminal columns), separated by two spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (widest, cell) in widths.iter_mut().zip(row) {
            *widest = (*widest).max(width(cell));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        out.push_str(&table_line(row, &widths));
        out.push('\n');
    }
    out
}

/// One line of a table: each cell padded to its column's width (a wider cell pushes the
/// rest right), two spaces between columns, no trailing spaces and no newline. For a
/// table printed as its rows arrive, with widths fixed in advance.
pub(crate) fn table_line(row: &[impl AsRef<str>], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, (cell, column)) in row.iter().zip(widths).enumerate() {
        let cell = cell.as_ref();
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        let pad = column.saturating_sub(width(cell));
        line.extend(std::iter::repeat_n(' ', pad));
    }
    line.truncate(line.trim_end().len());
    line
}

/// `label  value` lines with the values aligned.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let widest = pairs
        .iter()
        .map(|(label, _)| width(label))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in pairs {
        out.push_str(label);
        out.extend(std::iter::repeat_n(' ', widest - width(label) + 2));
        out.push_str(value);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_terminal_columns() {
        // The key and each ideograph take two columns, é one.
        let rows = vec![
            vec!["é🔑".to_owned(), "x".to_owned()],
            vec!["abcd".to_owned(), "yy".to_owned()],
            vec!["日本".to_owned(), "z".to_owned()],
        ];
        assert_eq!(
            table(&["A", "B"], &rows),
            "A     B\né🔑   x\nabcd  yy\n日本  z\n"
        );
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcd", 4), "abcd");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("日本語テキスト", 6), "日本…");
    }
}
