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

/// Draws characters uniformly from the 62 digits by rejection sampling: each random byte
/// gives 6 bits (0..64); 62 and 63 are rejected, so no digit is more likely than another.
pub(crate) fn fill_uniform<R>(rng: &mut R, digits: &[u8; 62], out: &mut [u8])
where
    R: rand_core::CryptoRng + ?Sized,
{
    // A few spare bytes cover the expected 1-in-32 rejections; more are drawn if needed.
    let mut pool = [0u8; 96];
    let first = (out.len() + 8).min(pool.len());
    let mut avail = first;
    rng.fill_bytes(&mut pool[..avail]);
    let mut next = 0;
    for slot in out.iter_mut() {
        loop {
            if next == avail {
                avail = 16;
                rng.fill_bytes(&mut pool[..avail]);
                next = 0;
            }
            let value = usize::from(pool[next] & 63);
            next += 1;
            if let Some(&digit) = digits.get(value) {
                *slot = digit;
                break;
            }
        }
    }
    // Refills reuse the start of the pool, so this covers every byte drawn.
    zeroize::Zeroize::zeroize(&mut pool[..first]);
}
