//! The two digit orders a token's characters and checksum are written in.

/// The order of the 62 base-62 digits.
///
/// Both orders use the same characters (`0-9`, `a-z`, `A-Z`), so they accept the same
/// random parts; they differ in the value of each letter, and so in the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Alphabet {
    /// `0-9a-zA-Z`: Dynamic's order (lower case before upper case).
    #[default]
    Dynamic,
    /// `0-9A-Za-z`: GitHub's and npm's order (upper case before lower case).
    GitHub,
}

const DYNAMIC_DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const GITHUB_DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl Alphabet {
    /// The 62 digits in this order; digit 0 is `0` in both.
    pub const fn digits(self) -> &'static [u8; 62] {
        match self {
            Alphabet::Dynamic => DYNAMIC_DIGITS,
            Alphabet::GitHub => GITHUB_DIGITS,
        }
    }

    /// The name used on command lines and in configuration: `dynamic` or `github`.
    pub const fn name(self) -> &'static str {
        match self {
            Alphabet::Dynamic => "dynamic",
            Alphabet::GitHub => "github",
        }
    }

    /// Both orders, Dynamic's first.
    pub const ALL: [Alphabet; 2] = [Alphabet::Dynamic, Alphabet::GitHub];
}

impl core::str::FromStr for Alphabet {
    type Err = UnknownAlphabet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Alphabet::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or(UnknownAlphabet)
    }
}

/// The name given is neither `dynamic` nor `github`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown alphabet: expected `dynamic` (0-9a-zA-Z) or `github` (0-9A-Za-z)")]
pub struct UnknownAlphabet;

/// Draws characters uniformly from the 62 digits, ten at a time from one 64-bit draw:
/// 62¹⁰ < 2⁶⁴, so a draw below the largest multiple of 62¹⁰ that fits in 64 bits (95.5% of
/// them) is a uniform number of ten base-62 digits; the others are rejected and drawn
/// again. No digit is more likely than another, and no character costs a branch.
pub(crate) fn fill_uniform<R>(rng: &mut R, digits: &[u8; 62], out: &mut [u8])
where
    R: rand_core::CryptoRng + ?Sized,
{
    const GROUP: usize = 10;
    const SPAN: u64 = 62u64.pow(GROUP as u32);
    const LIMIT: u64 = u64::MAX / SPAN * SPAN;
    for group in out.chunks_mut(GROUP) {
        let mut value = loop {
            let draw = rng.next_u64();
            if draw < LIMIT {
                break draw % SPAN;
            }
        };
        // The low digits of a uniform number of ten digits are uniform too, so a shorter
        // last group is as fair.
        for slot in group {
            *slot = digits[(value % 62) as usize];
            value /= 62;
        }
    }
}
