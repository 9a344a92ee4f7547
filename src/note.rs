//! [`Note`]: the required description that helps people recognise a token.

use crate::format::TokenFormat;
use crate::scan::scan;
use core::fmt;
use std::sync::Arc;

/// The most Unicode scalar values a note may hold.
pub const MAX_NOTE_CHARS: usize = 100;

/// A token's note: 1 to 100 Unicode scalar values once surrounding whitespace is trimmed,
/// with no control characters, line separators or bidirectional formatting characters, no
/// invisible (default-ignorable) characters except the joiners and variation selectors
/// of emoji sequences, and no API token in it. Cloning is a reference-count increment.
///
/// ```
/// use apitoken::{Note, NoteError};
///
/// assert_eq!(Note::new("  CI deploys  ")?.as_str(), "CI deploys");
/// assert!(Note::new(&"🔑".repeat(100)).is_ok());
/// assert!(Note::new("❤\u{FE0F}\u{200D}🔥 on-call").is_ok());
/// assert_eq!(
///     Note::new(&"🔑".repeat(101)).unwrap_err().to_string(),
///     "note too long: at most 100 characters, got 101"
/// );
/// // A zero-width space would make two notes that look alike differ.
/// assert!(matches!(
///     Note::new("CI\u{200B} deploys"),
///     Err(NoteError::InvisibleCharacter { position: 3, .. })
/// ));
/// // A secret pasted into a note would be stored in plain text.
/// assert!(matches!(
///     Note::new("old dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC"),
///     Err(NoteError::ContainsToken { position: 5 })
/// ));
/// # Ok::<(), apitoken::NoteError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Note(Arc<str>);

impl Note {
    /// Trims and checks a note.
    pub fn new(s: &str) -> Result<Note, NoteError> {
        let trimmed = Note::check_stored(s)?;
        let chars: Vec<char> = trimmed.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            let before = i.checked_sub(1).map(|j| chars[j]);
            if is_default_ignorable(c) && !in_emoji_sequence(c, before, chars.get(i + 1).copied()) {
                return Err(NoteError::InvisibleCharacter {
                    position: i + 1,
                    character: c,
                });
            }
        }
        if let Some(found) = scan(&TokenFormat::dynamic(), trimmed.as_bytes()).next() {
            let position = trimmed[..found.offset].chars().count() + 1;
            return Err(NoteError::ContainsToken { position });
        }
        Ok(Note(Arc::from(trimmed)))
    }

    /// A note read back from a store: trimmed and checked by the rules every version of
    /// this library has applied (length, control and bidirectional characters), but not by
    /// the ones added later (invisible characters, tokens), so that a record written by an
    /// earlier version stays readable. For stores; input from people goes through
    /// [`Note::new`].
    pub fn from_stored(s: &str) -> Result<Note, NoteError> {
        Note::check_stored(s).map(|trimmed| Note(Arc::from(trimmed)))
    }

    /// What a store keeps in place of a deleted record's note until the place is reused.
    pub(crate) fn placeholder() -> Note {
        Note(Arc::from("-"))
    }

    fn check_stored(s: &str) -> Result<&str, NoteError> {
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
        Ok(trimmed)
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

/// Unicode's Default_Ignorable_Code_Point (Unicode 16): characters that render as nothing,
/// so that two notes that look the same can differ ("CI deploys" and "CI\u{200B} deploys").
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The invisible characters emoji need, where they do their job: a variation selector
/// (U+FE00 to U+FE0F, as in ❤️) right after a visible character, and a zero-width joiner
/// (as in 👨‍👩‍👧) between a visible character (or its variation selector) and another.
fn in_emoji_sequence(c: char, before: Option<char>, after: Option<char>) -> bool {
    let visible =
        |c: Option<char>| c.is_some_and(|c| !is_default_ignorable(c) && !c.is_whitespace());
    match c {
        '\u{FE00}'..='\u{FE0F}' => visible(before),
        '\u{200D}' => {
            (visible(before) || before.is_some_and(|b| matches!(b, '\u{FE00}'..='\u{FE0F}')))
                && visible(after)
        }
        _ => false,
    }
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
    /// An invisible (default-ignorable) character, such as a zero-width space, a soft
    /// hyphen, a byte-order mark or a tag character, outside an emoji sequence.
    #[error(
        "note character {position} (U+{:04X}) is invisible; notes are plain visible text, so remove it",
        u32::from(*.character)
    )]
    InvisibleCharacter {
        /// Position counting from 1, in Unicode scalar values after trimming.
        position: usize,
        /// The character.
        character: char,
    },
    /// The note holds a well-formed API token, which would be stored in plain text.
    #[error(
        "the note contains an API token at character {position}: a note is stored and shown in plain text, so never put a token in it (and revoke that one if it is real)"
    )]
    ContainsToken {
        /// Where the token starts, counting from 1, in Unicode scalar values after
        /// trimming.
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
