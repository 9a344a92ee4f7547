//! [`Note`]: the required description that helps people recognise a token.

use core::fmt;
use std::sync::Arc;

/// The most Unicode scalar values a note may hold.
pub const MAX_NOTE_CHARS: usize = 100;

/// A token's note: 1 to 100 Unicode scalar values once surrounding whitespace is trimmed,
/// with no control characters, line separators or bidirectional formatting characters.
/// Cloning is a reference-count increment.
///
/// ```
/// use apitoken::Note;
///
/// assert_eq!(Note::new("  CI deploys  ")?.as_str(), "CI deploys");
/// assert!(Note::new(&"🔑".repeat(100)).is_ok());
/// assert_eq!(
///     Note::new(&"🔑".repeat(101)).unwrap_err().to_string(),
///     "note too long: at most 100 characters, got 101"
/// );
/// # Ok::<(), apitoken::NoteError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Note(Arc<str>);

impl Note {
    /// Trims and checks a note.
    pub fn new(s: &str) -> Result<Note, NoteError> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(NoteError::Empty);
        }
        let found = trimmed.chars().count();
        if found > MAX_NOTE_CHARS {
            return Err(NoteError::TooLong { found });
        }
        if let Some(i) = trimmed.chars().position(is_forbidden) {
            return Err(NoteError::ControlCharacter { position: i + 1 });
        }
        Ok(Note(Arc::from(trimmed)))
    }

    /// The note.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Control characters break a one-line display; line separators too; bidirectional
/// formatting characters can make a note read differently from what it holds ("Trojan
/// source"). Other format characters, such as the zero-width joiner in emoji sequences,
/// are fine.
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl core::str::FromStr for Note {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Note::new(s)
    }
}

impl TryFrom<&str> for Note {
    type Error = NoteError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Note::new(s)
    }
}

/// Why a note was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Empty or only whitespace.
    #[error("note is required: give 1 to 100 characters that say what the token is for")]
    Empty,
    /// More than 100 characters after trimming.
    #[error("note too long: at most 100 characters, got {found}")]
    TooLong {
        /// Unicode scalar values found after trimming.
        found: usize,
    },
    /// A control character (newline, tab, escape, …), a line separator or a
    /// bidirectional formatting character inside the note.
    #[error(
        "note character {position} is a control, line-separator or bidirectional-formatting character; notes are one line of plain text"
    )]
    ControlCharacter {
        /// Position counting from 1, in Unicode scalar values after trimming.
        position: usize,
    },
}

#[cfg(feature = "serde")]
impl serde::Serialize for Note {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Note {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Note::new(&s).map_err(serde::de::Error::custom)
    }
}
