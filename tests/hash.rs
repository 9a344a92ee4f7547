//! The at-rest hash is pinned: changing it would make every stored token unknown.
//! The vectors were computed independently with the Python `blake3` package.

use apitoken::{HashKey, KeyFingerprint, TokenHash, TokenHasher};

const REFERENCE_TOKEN: &str = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";

fn key_0_to_31() -> HashKey {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    HashKey::from_bytes(bytes)
}

#[test]
fn unkeyed_hash_of_the_reference_token_is_pinned() {
    let hash = TokenHasher::unkeyed().hash(REFERENCE_TOKEN);
    assert_eq!(
        hash.to_hex(),
        "b67a734e076f53935e8d647af54fa7b43a13a5baba486a4c93f4df38b84b44f6"
    );
}

#[test]
fn keyed_hash_of_the_reference_token_is_pinned() {
    let hash = TokenHasher::keyed(key_0_to_31()).hash(REFERENCE_TOKEN);
    assert_eq!(
        hash.to_hex(),
        "b4c37a6a7cdc9784a6792420eae1e0b3b2ed3ca0c201ee9e7582a6c992ed187e"
    );
}

#[test]
fn key_fingerprint_is_pinned_and_reveals_nothing_in_debug() {
    let key = key_0_to_31();
    assert_eq!(key.fingerprint().to_string(), "key:9c57afc8c218892d");
    assert_eq!(format!("{key:?}"), "HashKey(key:9c57afc8c218892d)");
    assert_eq!(
        "key:9c57afc8c218892d".parse::<KeyFingerprint>(),
        Ok(key.fingerprint())
    );
    assert_eq!(
        TokenHasher::unkeyed().fingerprint(),
        KeyFingerprint::Unkeyed
    );
    for bad in [
        "",
        "key:",
        "key:9c57afc8c218892",
        "key:9c57afc8c218892dd",
        "9c57afc8c218892d",
        "key:9c57afc8c218892g",
        "Unkeyed",
    ] {
        assert!(bad.parse::<KeyFingerprint>().is_err(), "{bad:?}");
    }
}

#[test]
fn keyed_and_unkeyed_hashes_differ_and_each_key_gives_its_own() {
    let unkeyed = TokenHasher::unkeyed().hash(REFERENCE_TOKEN);
    let keyed = TokenHasher::keyed(key_0_to_31()).hash(REFERENCE_TOKEN);
    let other = TokenHasher::keyed(HashKey::from_bytes([7; 32])).hash(REFERENCE_TOKEN);
    assert_ne!(unkeyed, keyed);
    assert_ne!(keyed, other);
}

#[test]
fn hash_covers_the_whole_token_including_the_prefix() {
    let hasher = TokenHasher::unkeyed();
    let a = hasher.hash(REFERENCE_TOKEN);
    let b = hasher.hash(&REFERENCE_TOKEN.replacen("dyn", "dyx", 1));
    assert_ne!(a, b);
}

#[test]
fn hash_key_hex_is_checked() {
    let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
    assert_eq!(
        HashKey::from_hex(&format!("  {hex}\n"))
            .unwrap()
            .fingerprint()
            .to_string(),
        "key:9c57afc8c218892d"
    );
    let short = HashKey::from_hex(&hex[..63]).unwrap_err().to_string();
    assert_eq!(
        short,
        "a hash key is 64 hexadecimal characters (32 bytes), got 63 characters"
    );
    let not_hex = HashKey::from_hex(&hex.replace('f', "g"))
        .unwrap_err()
        .to_string();
    assert!(not_hex.contains("hexadecimal"), "{not_hex}");
    // A multi-byte character must not be split.
    assert!(HashKey::from_hex(&format!("é{}", &hex[2..])).is_err());
}

#[test]
fn token_hash_hex_round_trips_and_debug_is_short() {
    let hash = TokenHasher::unkeyed().hash(REFERENCE_TOKEN);
    assert_eq!(TokenHash::from_hex(&hash.to_hex()).unwrap(), hash);
    assert_eq!(TokenHash::from_bytes(*hash.as_bytes()), hash);
    assert_eq!(format!("{hash:?}"), "TokenHash(b67a734e…)");
}

#[test]
fn generated_keys_differ() {
    let a = HashKey::generate().unwrap();
    let b = HashKey::generate().unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
}

/// Equality (word-wise, constant-time) notices a difference in any single bit.
#[test]
fn hashes_differing_in_any_one_bit_are_unequal() {
    let base = TokenHasher::unkeyed().hash("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC");
    assert_eq!(base, TokenHash::from_bytes(*base.as_bytes()));
    for byte in 0..32 {
        for bit in 0..8 {
            let mut bytes = *base.as_bytes();
            bytes[byte] ^= 1 << bit;
            assert_ne!(base, TokenHash::from_bytes(bytes), "byte {byte} bit {bit}");
        }
    }
}
