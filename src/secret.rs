//! [`RawToken`]: the plaintext of a token, shown once.

use crate::format::checksum::Checksum;
use crate::format::limits::MAX_TOKEN_LEN;
use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The plaintext of a token: the secret a client presents.
///
/// It lives inline (no heap copy to forget), is wiped from memory when dropped, shows
/// only its prefix and checksum in `Debug` (`RawToken(dyn_…4n3LFC)`), has no `Display`,
/// no `Serialize` and no `Clone`; [`RawToken::expose_secret`] is the one way to read it.
/// Equality is constant-time.
pub struct RawToken {
    buf: [u8; MAX_TOKEN_LEN],
    len: u8,
    prefix_len: u8,
    checksum: Checksum,
}

impl RawToken {
    pub(crate) fn from_parts(
        buf: [u8; MAX_TOKEN_LEN],
        len: usize,
        prefix_len: usize,
        checksum: Checksum,
    ) -> RawToken {
        debug_assert!(len <= MAX_TOKEN_LEN && buf.get(..len).is_some_and(<[u8]>::is_ascii));
        RawToken {
            buf,
            len: len as u8,
            prefix_len: prefix_len as u8,
            checksum,
        }
    }

    /// The whole token, secret included: the one way to read it. Hand it to its owner
    /// once; never log, store or display it.
    pub fn expose_secret(&self) -> &str {
        // Only ASCII is ever stored (generated or parsed), so this never falls back.
        core::str::from_utf8(self.bytes()).unwrap_or_default()
    }

    /// The prefix, without the underscore.
    pub fn prefix(&self) -> &str {
        self.expose_secret()
            .get(..usize::from(self.prefix_len))
            .unwrap_or_default()
    }

    /// The last 6 characters, which identify the token to people without revealing it.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl RawToken {
    fn wipe(&mut self) {
        // Bytes past `len` were never written (the buffer starts zeroed).
        let len = usize::from(self.len);
        self.buf.get_mut(..len).unwrap_or_default().zeroize();
    }
}

impl Drop for RawToken {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawToken({}_…{})", self.prefix(), self.checksum)
    }
}

impl PartialEq for RawToken {
    fn eq(&self, other: &Self) -> bool {
        // The length is public (it is fixed by the format); the content is compared in
        // constant time.
        self.len == other.len && bool::from(self.bytes().ct_eq(other.bytes()))
    }
}

impl Eq for RawToken {}

#[cfg(test)]
mod tests {
    use crate::format::TokenFormat;

    #[test]
    fn drop_wipes_the_buffer() {
        let format = TokenFormat::dynamic();
        let mut token = format
            .parse("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC")
            .unwrap()
            .to_raw_token();
        assert!(token.buf.iter().any(|&b| b != 0));
        // `Drop::drop` cannot be called directly in safe code; it does exactly this.
        token.wipe();
        assert!(token.buf.iter().all(|&b| b == 0));
    }
}
