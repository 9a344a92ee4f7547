//! The lengths every format keeps within (a leaf module: [`RawToken`](crate::RawToken)
//! sizes its buffer with them without depending on the format logic).

use super::checksum::CHECKSUM_LEN;

/// The longest prefix a format accepts, in bytes.
pub const MAX_PREFIX_LEN: usize = 16;
/// The fewest random characters a format accepts: 22 base-62 characters carry 130 bits.
pub const MIN_RANDOM_LEN: usize = 22;
/// The most random characters a format accepts.
pub const MAX_RANDOM_LEN: usize = 64;
/// The longest token any format produces.
pub const MAX_TOKEN_LEN: usize = MAX_PREFIX_LEN + 1 + MAX_RANDOM_LEN + CHECKSUM_LEN;
