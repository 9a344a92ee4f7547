//! Files that hold secrets (the hash key, the database URL, the token database): who
//! besides their owner may read or write them, and the `chmod` that stops it. The rules
//! are ssh's for private keys: a file others may write is refused (they could put their
//! own key or server in it), one they may read is a warning. Modes are Unix's; elsewhere
//! nothing is checked.

use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// More than any hash key or database URL; a longer file (`/dev/zero`, a log named by
/// mistake) holds neither and is not read to its end.
const MAX_SECRET: u64 = 64 * 1024;

/// Reads a file that holds a secret; `what` names it in messages ("the hash key file").
/// Refused when group or others may write it; when they may read it, a warning is added
/// to `warnings`. A symbolic link is followed: the mode of the file it names counts.
pub(crate) fn read_secret(
    path: &Path,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read {what} {shown}: {e}");
    // The mode is read from the opened file, so it is the mode of what is read, even if
    // the path is swapped meanwhile.
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mode = unix_mode(&file.metadata().map_err(cannot)?);
    if let Some(mode) = mode
        && let Some(writers) = who(mode, 0o020, 0o002)
    {
        return Err(format!(
            "{what} {shown} is writable by {writers} (mode {mode:04o}), who could replace what it holds: make it private with `chmod 600 {}`, then retry",
            shell_word(path)
        ));
    }
    if let Some(mode) = mode
        && let Some(readers) = who(mode, 0o040, 0o004)
    {
        warnings.push(format!(
            "{what} {shown} is readable by {readers} (mode {mode:04o}): they can read the secret in it; make it private with `chmod 600 {}`",
            shell_word(path)
        ));
    }
    // Room for any real secret up front: growing the buffer would leave copies behind
    // that are never wiped.
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    file.take(MAX_SECRET + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET {
        return Err(format!(
            "{what} {shown} is larger than 64 KiB, so it holds no secret of ours: check the path"
        ));
    }
    Ok(bytes)
}

/// A warning when group or others may read or write `path` (a symbolic link followed),
/// which holds what `holds` says; `None` when it is private or does not exist.
pub(crate) fn exposed(path: &Path, holds: &str) -> Option<String> {
    let mode = unix_mode(&std::fs::metadata(path).ok()?)?;
    let access = access(mode)?;
    Some(format!(
        "{} is {access} (mode {mode:04o}): it holds {holds}; make it private with `chmod 600 {}`",
        path.display(),
        shell_word(path)
    ))
}

/// "readable by …", "writable by …" or both, for the group and other bits of `mode`;
/// `None` when neither group nor others have access.
pub(crate) fn access(mode: u32) -> Option<String> {
    let parts: Vec<String> = [("readable", 0o040, 0o004), ("writable", 0o020, 0o002)]
        .into_iter()
        .filter_map(|(how, group, other)| who(mode, group, other).map(|w| format!("{how} by {w}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// Who the group bit and the other bit of `mode` let in.
fn who(mode: u32, group: u32, other: u32) -> Option<&'static str> {
    match (mode & group != 0, mode & other != 0) {
        (true, true) => Some("its group and other users"),
        (true, false) => Some("its group"),
        (false, true) => Some("other users"),
        (false, false) => None,
    }
}

/// The permission bits, on Unix.
#[cfg(unix)]
pub(crate) fn unix_mode(metadata: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(metadata.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
pub(crate) fn unix_mode(_metadata: &std::fs::Metadata) -> Option<u32> {
    None
}

/// `path` as one word for a POSIX shell, so that the `chmod` shown can be pasted.
pub(crate) fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%~".contains(c))
        && !text.starts_with('~');
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_names_who_may_read_and_write() {
        assert_eq!(access(0o600), None);
        assert_eq!(access(0o700), None);
        assert_eq!(
            access(0o644).as_deref(),
            Some("readable by its group and other users")
        );
        assert_eq!(access(0o640).as_deref(), Some("readable by its group"));
        assert_eq!(
            access(0o664).as_deref(),
            Some("readable by its group and other users and writable by its group")
        );
        assert_eq!(access(0o602).as_deref(), Some("writable by other users"));
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_word(Path::new("/srv/key.hex")), "/srv/key.hex");
        assert_eq!(shell_word(Path::new("my key")), "'my key'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
        assert_eq!(shell_word(Path::new("~x")), "'~x'");
        assert_eq!(shell_word(Path::new("$(rm)")), "'$(rm)'");
    }
}
