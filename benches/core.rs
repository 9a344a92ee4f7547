//! The hot paths side by side with peers, in one run so every ratio is fair.
//!
//! ```sh
//! cargo bench --bench core
//! ```
//!
//! Groups: `generate`; `issue_without_store` (generate + hash + build the record) for us,
//! `prefixed-api-key` and a typical hand-rolled implementation; `issue_memory_store`;
//! `authenticate_1m` against a `MemoryStore` of 1M tokens (live, unknown, revoked, and
//! through `CachedStore`) with the peers' verification (prefixed-api-key both among 1M
//! stored keys and alone, against a hash already in hand); `reject_malformed`; `scope_check`;
//! `json`; `two_threads` (issue and authenticate on 1 and 2 threads, same code); `floor`
//! (the primitives: random bytes, CRC-32, BLAKE3, a 1M hash-map look-up); `keyring`
//! (authentication with a ring of 1 and of 4 keys: a hit under the current key, a hit
//! under a retired key, a miss; a `MemoryStore` of 10,000 tokens, and with the `sqlite`
//! feature the same on an in-memory SQLite database, and there a token's first use, which
//! writes: its last use under one key, and its rehash too under a retired key).
#![allow(missing_docs, clippy::unwrap_used)]

use apitoken::{
    CachedStore, Creator, EnvironmentId, HashKey, HashKeyring, IssueRequest, IssuedToken,
    MemoryStore, Note, Principal, Scope, Scopes, TokenFormat, TokenHasher, TokenIssuer, TokenStore,
    UserId,
};
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

mod common;
use common::{REFERENCE, ready};

const MILLION: usize = 1_000_000;

fn env() -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(1))
}

fn creator() -> Creator {
    Creator {
        alias: Some("jsmith".into()),
        email: Some("jsmith@example.com".into()),
        ..Creator::new(UserId::from_uuid(Uuid::from_u128(2)))
    }
}

fn request() -> IssueRequest {
    IssueRequest::new(Note::new("deploys from CI (prod)").unwrap())
        .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ])
}

/// The typical hand-rolled implementation: thread-RNG alphanumeric sampling, the base62
/// crate's checksum via `format!`, SHA-256 as a hex string, a `HashMap<String, _>`.
mod handrolled {
    use rand::distr::{Alphanumeric, SampleString};
    use sha2_010::{Digest, Sha256};

    pub(crate) fn generate_and_hash() -> (String, String) {
        let random = Alphanumeric.sample_string(&mut rand::rng(), 30);
        let checksum = format!(
            "{:0>6}",
            base62::encode_alternative(crc32fast::hash(random.as_bytes()))
        );
        let token = format!("dyn_{random}{checksum}");
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        (token, hash)
    }

    pub(crate) fn verify<'a, V>(
        token: &str,
        store: &'a std::collections::HashMap<String, V>,
    ) -> Option<&'a V> {
        let body = token.strip_prefix("dyn_")?;
        if body.len() != 36 || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (random, checksum) = body.split_at(30);
        let expected = format!(
            "{:0>6}",
            base62::encode_alternative(crc32fast::hash(random.as_bytes()))
        );
        if expected != checksum {
            return None;
        }
        store.get(&hex::encode(Sha256::digest(token.as_bytes())))
    }
}

type Pak = prefixed_api_key::PrefixedApiKeyController<rand08::rngs::ThreadRng, sha2_010::Sha256>;
type PakOs = prefixed_api_key::PrefixedApiKeyController<rand08::rngs::OsRng, sha2_010::Sha256>;

fn pak() -> Pak {
    Pak::configure()
        .prefix("dyn".to_owned())
        .rng_threadrng()
        .digest_sha256()
        .default_lengths()
        .finalize()
        .unwrap()
}

fn pak_os() -> PakOs {
    PakOs::configure()
        .prefix("dyn".to_owned())
        .rng_osrng()
        .digest_sha256()
        .default_lengths()
        .finalize()
        .unwrap()
}

fn generate(c: &mut Criterion) {
    let format = TokenFormat::dynamic();
    let mut g = c.benchmark_group("generate");
    g.throughput(Throughput::Elements(1));
    let mut seeded = StdRng::seed_from_u64(1);
    g.bench_function("ours_seeded_chacha12", |b| {
        b.iter(|| format.generate(&mut seeded))
    });
    g.bench_function("ours_thread_rng", |b| {
        b.iter(|| format.generate(&mut rand::rng()))
    });
    g.finish();
}

fn issue_without_store(c: &mut Criterion) {
    let format = TokenFormat::dynamic();
    let hasher = TokenHasher::unkeyed();
    let creator = Arc::new(creator());
    let request = request();
    let now = Utc::now();
    let mut g = c.benchmark_group("issue_without_store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ours", |b| {
        b.iter(|| {
            common::issue_without_store(
                &format,
                &hasher,
                now,
                env(),
                &creator,
                &request.note,
                &request.scopes,
            )
        })
    });
    let pak = pak();
    g.bench_function("prefixed_api_key_thread_rng", |b| {
        b.iter(|| pak.generate_key_and_hash())
    });
    let pak_os = pak_os();
    g.bench_function("prefixed_api_key_os_rng", |b| {
        b.iter(|| pak_os.generate_key_and_hash())
    });
    g.bench_function("handrolled", |b| b.iter(handrolled::generate_and_hash));
    g.finish();
}

fn issue_memory_store(c: &mut Criterion) {
    let mut g = c.benchmark_group("issue_memory_store");
    g.throughput(Throughput::Elements(1));
    let creator = Arc::new(creator());
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            // Fresh stores of at most 100k tokens, dropped outside the timed part.
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(100_000);
                let issuer = TokenIssuer::builder(MemoryStore::new())
                    .limits(apitoken::Limits::NONE)
                    .build();
                let start = Instant::now();
                for _ in 0..n {
                    black_box(ready(issuer.issue(env(), creator.clone(), request())).unwrap());
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    g.finish();
}

struct Million {
    issuer: TokenIssuer<Arc<MemoryStore>>,
    cached: TokenIssuer<CachedStore<Arc<MemoryStore>>>,
    live: Presented,
    revoked: String,
    unknown: String,
}

fn million() -> Million {
    let store = Arc::new(MemoryStore::new());
    // A million tokens in one environment: past the default cap of 100,000.
    let issuer = TokenIssuer::builder(store.clone())
        .last_use_interval(None)
        .limits(apitoken::Limits::NONE)
        .build();
    let creator = Arc::new(creator());
    let mut live = Vec::with_capacity(MILLION);
    for _ in 0..MILLION {
        let t = ready(issuer.issue(env(), creator.clone(), request())).unwrap();
        live.push(t.raw.expose_secret().to_owned());
    }
    let revoked = ready(issuer.issue(env(), creator.clone(), request())).unwrap();
    ready(issuer.revoke(env(), creator.clone(), revoked.token.id)).unwrap();
    let unknown = TokenFormat::dynamic().generate(&mut rand::rng());
    let cached = TokenIssuer::builder(CachedStore::new(store).capacity(2 * MILLION))
        .last_use_interval(None)
        .build();
    Million {
        issuer,
        cached,
        live: Presented::new(shuffled(live)),
        revoked: revoked.raw.expose_secret().to_owned(),
        unknown: unknown.expose_secret().to_owned(),
    }
}

/// The tokens to present, in look-up order, side by side in one buffer: a server reads
/// the presented token from a request it has just received, so it is in cache; a
/// `Vec<String>` of a million scattered strings would add a cache miss per look-up that
/// no server pays. The store is still probed in random order.
struct Presented {
    all: String,
    /// Where each token ends, when they differ in length (prefixed-api-key's do).
    ends: Option<Vec<usize>>,
    len: usize,
}

impl Presented {
    fn new(tokens: Vec<String>) -> Presented {
        let len = tokens[0].len();
        let ends = (!tokens.iter().all(|t| t.len() == len)).then(|| {
            tokens
                .iter()
                .scan(0, |end, t| {
                    *end += t.len();
                    Some(*end)
                })
                .collect()
        });
        Presented {
            all: tokens.concat(),
            ends,
            len,
        }
    }

    fn get(&self, i: usize) -> &str {
        match &self.ends {
            None => &self.all[i * self.len..(i + 1) * self.len],
            Some(ends) => &self.all[i.checked_sub(1).map_or(0, |p| ends[p])..ends[i]],
        }
    }
}

fn shuffled(mut v: Vec<String>) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(9);
    for i in (1..v.len()).rev() {
        let j = (rand::RngExt::random::<u64>(&mut rng) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

struct Handrolled {
    store: HashMap<String, usize>,
    tokens: Presented,
}

fn handrolled_million() -> Handrolled {
    let mut store = HashMap::with_capacity(MILLION);
    let mut tokens = Vec::with_capacity(MILLION);
    for n in 0..MILLION {
        let (token, hash) = handrolled::generate_and_hash();
        store.insert(hash, n);
        tokens.push(token);
    }
    Handrolled {
        store,
        tokens: Presented::new(shuffled(tokens)),
    }
}

/// prefixed-api-key as its README stores keys: the short token (the key's public part)
/// indexes the long token's hash. 1M of them in a `HashMap<String, String>`.
struct PakMillion {
    pak: Pak,
    store: HashMap<String, String>,
    tokens: Presented,
}

fn pak_million() -> PakMillion {
    let pak = pak();
    let mut store = HashMap::with_capacity(MILLION);
    let mut tokens = Vec::with_capacity(MILLION);
    for _ in 0..MILLION {
        let (key, hash) = pak.generate_key_and_hash();
        store.insert(key.short_token().to_owned(), hash);
        tokens.push(key.to_string());
    }
    PakMillion {
        pak,
        store,
        tokens: Presented::new(shuffled(tokens)),
    }
}

fn authenticate_1m(c: &mut Criterion) {
    // Built on first use, so that a filtered run (`cargo bench -- generate`) skips it.
    let m = OnceCell::new();
    let m = || m.get_or_init(million);
    let mut g = c.benchmark_group("authenticate_1m");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("ours_live", |b| {
        let m = m();
        b.iter(|| {
            i = (i + 1) % MILLION;
            ready(m.issuer.authenticate(m.live.get(i))).unwrap()
        })
    });
    g.bench_function("ours_unknown", |b| {
        let m = m();
        b.iter(|| ready(m.issuer.authenticate(black_box(&m.unknown))).unwrap_err())
    });
    g.bench_function("ours_revoked", |b| {
        let m = m();
        b.iter(|| ready(m.issuer.authenticate(black_box(&m.revoked))).unwrap_err())
    });
    let mut j = 0;
    g.bench_function("ours_cached_live", |b| {
        let m = m();
        // Warm the cache with the first 100k tokens, then hit them.
        for n in 0..100_000 {
            ready(m.cached.authenticate(m.live.get(n))).unwrap();
        }
        b.iter(|| {
            j = (j + 1) % 100_000;
            ready(m.cached.authenticate(m.live.get(j))).unwrap()
        })
    });

    // Peers: 1M hand-rolled tokens in a HashMap<String, _>; prefixed-api-key's check.
    let h = OnceCell::new();
    let mut k = 0;
    g.bench_function("handrolled_live", |b| {
        let h = h.get_or_init(handrolled_million);
        b.iter(|| {
            k = (k + 1) % MILLION;
            handrolled::verify(h.tokens.get(k), &h.store).unwrap()
        })
    });
    // Like for like: the same check after finding the stored hash among 1M.
    let p = OnceCell::new();
    let mut l = 0;
    g.bench_function("prefixed_api_key_1m", |b| {
        let p = p.get_or_init(pak_million);
        b.iter(|| {
            l = (l + 1) % MILLION;
            let parsed = prefixed_api_key::PrefixedApiKey::from_string(p.tokens.get(l)).unwrap();
            let hash = p.store.get(parsed.short_token()).unwrap();
            assert!(p.pak.check_hash(&parsed, hash));
        })
    });
    // The check alone, against a hash the caller already holds: no look-up.
    let pak = pak();
    let (key, hash) = pak.generate_key_and_hash();
    let key = key.to_string();
    g.bench_function("prefixed_api_key_verify", |b| {
        b.iter(|| {
            let parsed = prefixed_api_key::PrefixedApiKey::from_string(black_box(&key)).unwrap();
            assert!(pak.check_hash(&parsed, &hash));
        })
    });
    g.finish();
}

/// The floor of the work, measured in the same run: the primitives every implementation
/// pays, so that each of our figures can be read against them on any machine.
fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    g.throughput(Throughput::Elements(1));
    let mut seeded = StdRng::seed_from_u64(5);
    g.bench_function("chacha12_32_bytes", |b| {
        b.iter(|| {
            let mut bytes = [0u8; 32];
            rand::Rng::fill_bytes(&mut seeded, &mut bytes);
            bytes
        })
    });
    g.bench_function("getrandom_32_bytes", |b| {
        b.iter(|| {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).unwrap();
            bytes
        })
    });
    g.bench_function("crc32_30_bytes", |b| {
        b.iter(|| crc32fast::hash(black_box(&REFERENCE.as_bytes()[4..34])))
    });
    g.bench_function("blake3_40_bytes", |b| {
        b.iter(|| blake3::hash(black_box(REFERENCE.as_bytes())))
    });
    // A look-up among 1M random 32-byte keys in random order: the cache misses any
    // in-memory store pays (identity hash on the first 8 bytes, nothing else done).
    let table = OnceCell::new();
    let mut i = 0;
    g.bench_function("hashmap_1m_lookup", |b| {
        let (map, keys) = table.get_or_init(|| {
            let mut rng = StdRng::seed_from_u64(6);
            let keys: Vec<[u8; 32]> = (0..MILLION)
                .map(|_| rand::RngExt::random(&mut rng))
                .collect();
            let map: HashMap<[u8; 32], u32, BuildHasherDefault<Prefix>> =
                keys.iter().zip(0..).map(|(k, n)| (*k, n)).collect();
            let mut order = keys;
            for n in (1..order.len()).rev() {
                order.swap(n, rand::RngExt::random_range(&mut rng, 0..=n));
            }
            (map, order)
        });
        b.iter(|| {
            i = (i + 1) % MILLION;
            *map.get(&keys[i]).unwrap()
        })
    });
    g.finish();
}

#[derive(Default)]
struct Prefix(u64);

impl Hasher for Prefix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Arrays write their length first; the key is the 32-byte write.
        if bytes.len() == 32
            && let Some(first) = bytes.first_chunk::<8>()
        {
            self.0 = u64::from_le_bytes(*first);
        }
    }
}

fn reject_malformed(c: &mut Criterion) {
    let issuer = TokenIssuer::new(MemoryStore::new());
    let mut g = c.benchmark_group("reject_malformed");
    g.throughput(Throughput::Elements(1));
    let wrong_prefix = REFERENCE.replacen("dyn", "ghp", 1);
    let bad_checksum = REFERENCE.replacen("4n3LFC", "4n3LFD", 1);
    let garbage = {
        let mut rng = StdRng::seed_from_u64(3);
        let mut s = String::from("dyn_");
        while s.len() < 1 << 20 {
            s.push(char::from(
                b'!' + (rand::RngExt::random::<u8>(&mut rng) % 90),
            ));
        }
        s
    };
    let format = TokenFormat::dynamic();
    for (name, input) in [
        ("wrong_prefix", wrong_prefix.as_str()),
        ("bad_checksum", bad_checksum.as_str()),
        ("garbage_1mib", garbage.as_str()),
    ] {
        g.bench_function(format!("parse_{name}"), |b| {
            b.iter(|| format.parse(black_box(input)).unwrap_err())
        });
        g.bench_function(format!("authenticate_{name}"), |b| {
            b.iter(|| ready(issuer.authenticate(black_box(input))).unwrap_err())
        });
    }
    g.bench_function("parse_valid", |b| {
        b.iter(|| format.parse(black_box(REFERENCE)).unwrap())
    });
    g.finish();
}

fn scope_check(c: &mut Criterion) {
    let issuer = TokenIssuer::new(MemoryStore::new());
    let scopes = Scopes::from([
        Scope::ENVIRONMENT_API_TOKENS_READ,
        Scope::ENVIRONMENT_USERS_READ,
        Scope::ENVIRONMENT_EVENTS_READ,
        Scope::WAAS_AUTHENTICATE,
    ]);
    let issued = ready(issuer.issue(env(), creator(), request().with_scopes(scopes))).unwrap();
    let principal: Principal = ready(issuer.authenticate(issued.raw.expose_secret())).unwrap();
    let required = [Scope::ENVIRONMENT_EVENTS_READ, Scope::WAAS_AUTHENTICATE];
    let mut g = c.benchmark_group("scope_check");
    g.throughput(Throughput::Elements(1));
    g.bench_function("two_of_four", |b| {
        b.iter(|| {
            principal
                .authorize(black_box(env()), black_box(&required))
                .unwrap()
        })
    });
    g.finish();
}

fn json(c: &mut Criterion) {
    let issuer = TokenIssuer::new(MemoryStore::new());
    let issued: IssuedToken = ready(issuer.issue(env(), creator(), request())).unwrap();
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("issued_token_to_vec", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&issued)).unwrap();
        })
    });
    g.finish();
}

/// The same work on 1 and on 2 threads: throughput (elements) counts every thread's.
fn two_threads(c: &mut Criterion) {
    let store = Arc::new(MemoryStore::new());
    let issuer = Arc::new(TokenIssuer::builder(store).last_use_interval(None).build());
    let creator = Arc::new(creator());
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..100_000)
            .map(|_| {
                let t = ready(issuer.issue(env(), creator.clone(), request())).unwrap();
                t.raw.expose_secret().to_owned()
            })
            .collect(),
    );
    let mut g = c.benchmark_group("two_threads");
    for threads in [1u64, 2] {
        g.throughput(Throughput::Elements(threads));
        let (issuer, tokens) = (issuer.clone(), tokens.clone());
        g.bench_function(format!("authenticate_{threads}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let (issuer, tokens) = (&issuer, &tokens);
                        s.spawn(move || {
                            for n in 0..iters as usize {
                                let token = &tokens[(n * 7 + t as usize * 50_000) % tokens.len()];
                                black_box(ready(issuer.authenticate(token)).unwrap());
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        let creator = creator.clone();
        g.bench_function(format!("issue_{threads}"), |b| {
            b.iter_custom(|iters| {
                let issuer = TokenIssuer::builder(MemoryStore::new())
                    .limits(apitoken::Limits::NONE)
                    .build();
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let (issuer, creator) = (&issuer, &creator);
                        s.spawn(move || {
                            for _ in 0..iters {
                                black_box(
                                    ready(issuer.issue(env(), creator.clone(), request())).unwrap(),
                                );
                            }
                        });
                    }
                });
                let elapsed = start.elapsed();
                drop(issuer);
                elapsed
            })
        });
    }
    g.finish();
}

/// Issuers of a ring of one key and of four over one store, and tokens: `current` issued
/// under the four-key ring's current key, `retired` under the key both rings share (the
/// one-key ring's only key, the four-key ring's first retired one), `unknown` never issued.
struct Rings<S> {
    one: TokenIssuer<S>,
    four: TokenIssuer<S>,
    current: Vec<String>,
    retired: Vec<String>,
    unknown: String,
}

const RING_TOKENS: usize = 10_000;

/// `issue` issues a token with the issuer given and returns its raw text.
fn rings<S: TokenStore + Clone>(store: S, issue: impl Fn(&TokenIssuer<S>) -> String) -> Rings<S> {
    let key = |byte: u8| TokenHasher::keyed(HashKey::from_bytes([byte; 32]));
    // Neither rehashes nor records last use: each iteration reads, as a hit would after
    // its first use (the rehash is one write per token, once).
    let builder = |ring: HashKeyring| {
        TokenIssuer::builder(store.clone())
            .keyring(ring)
            .last_use_interval(None)
            .rehash_on_use(false)
    };
    let one = builder(HashKeyring::new(key(1))).build();
    let mut four = HashKeyring::new(key(2));
    for byte in [1, 3, 4] {
        four = four.with_retired(key(byte), None).unwrap();
    }
    let four = builder(four).build();
    let retired = (0..RING_TOKENS).map(|_| issue(&one)).collect();
    let current = (0..RING_TOKENS).map(|_| issue(&four)).collect();
    let unknown = TokenFormat::dynamic().generate(&mut rand::rng());
    Rings {
        one,
        four,
        current,
        retired,
        unknown: unknown.expose_secret().to_owned(),
    }
}

fn bench_rings<S: TokenStore>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    store: &str,
    r: &Rings<S>,
) {
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % RING_TOKENS;
        i
    };
    g.bench_function(format!("{store}_ring1_current_hit"), |b| {
        b.iter(|| ready(r.one.authenticate(&r.retired[next()])).unwrap())
    });
    g.bench_function(format!("{store}_ring1_miss"), |b| {
        b.iter(|| ready(r.one.authenticate(black_box(&r.unknown))).unwrap_err())
    });
    g.bench_function(format!("{store}_ring4_current_hit"), |b| {
        b.iter(|| ready(r.four.authenticate(&r.current[next()])).unwrap())
    });
    g.bench_function(format!("{store}_ring4_retired_hit"), |b| {
        b.iter(|| ready(r.four.authenticate(&r.retired[next()])).unwrap())
    });
    g.bench_function(format!("{store}_ring4_miss"), |b| {
        b.iter(|| ready(r.four.authenticate(black_box(&r.unknown))).unwrap_err())
    });
}

fn keyring(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyring");
    g.throughput(Throughput::Elements(1));
    let memory = rings(Arc::new(MemoryStore::new()), |issuer| {
        let issued = ready(issuer.issue(env(), creator(), request())).unwrap();
        issued.raw.expose_secret().to_owned()
    });
    bench_rings(&mut g, "memory", &memory);
    drop(memory);
    #[cfg(feature = "sqlite")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(async {
            let store = apitoken::SqliteStore::connect("sqlite::memory:")
                .await
                .unwrap();
            store
                .prepare(apitoken::KeyFingerprint::Unkeyed)
                .await
                .unwrap();
            Arc::new(store)
        });
        let _entered = runtime.enter();
        // First uses, which write: a token of the one-key ring records its last use; a
        // token of the retired key, under the ring of four, records it and is rehashed.
        let key = |byte: u8| TokenHasher::keyed(HashKey::from_bytes([byte; 32]));
        let writer = store.clone();
        let writing =
            |ring: HashKeyring| TokenIssuer::builder(writer.clone()).keyring(ring).build();
        let one_writing = writing(HashKeyring::new(key(1)));
        let mut four = HashKeyring::new(key(2));
        for byte in [1, 3, 4] {
            four = four.with_retired(key(byte), None).unwrap();
        }
        let four_writing = writing(four);
        let fresh = || {
            runtime
                .block_on(one_writing.issue(env(), creator(), request()))
                .unwrap()
                .raw
                .expose_secret()
                .to_owned()
        };
        let sqlite = rings(store, |issuer| {
            let issued = runtime
                .block_on(issuer.issue(env(), creator(), request()))
                .unwrap();
            issued.raw.expose_secret().to_owned()
        });
        let mut i = 0;
        let mut next = || {
            i = (i + 1) % RING_TOKENS;
            i
        };
        let on = |f| runtime.block_on(f);
        g.bench_function("sqlite_ring1_current_hit", |b| {
            b.iter(|| on(sqlite.one.authenticate(&sqlite.retired[next()])).unwrap())
        });
        g.bench_function("sqlite_ring1_miss", |b| {
            b.iter(|| on(sqlite.one.authenticate(black_box(&sqlite.unknown))).unwrap_err())
        });
        g.bench_function("sqlite_ring4_current_hit", |b| {
            b.iter(|| on(sqlite.four.authenticate(&sqlite.current[next()])).unwrap())
        });
        g.bench_function("sqlite_ring4_retired_hit", |b| {
            b.iter(|| on(sqlite.four.authenticate(&sqlite.retired[next()])).unwrap())
        });
        g.bench_function("sqlite_ring4_miss", |b| {
            b.iter(|| on(sqlite.four.authenticate(black_box(&sqlite.unknown))).unwrap_err())
        });
        // Last, since these write (the store's background flush then runs among the
        // reads). The first use under the ring of four moves the token to the current
        // key: the one-key ring no longer finds it.
        let moved = fresh();
        runtime.block_on(four_writing.authenticate(&moved)).unwrap();
        assert!(runtime.block_on(one_writing.authenticate(&moved)).is_err());
        g.bench_function("sqlite_ring1_first_use", |b| {
            b.iter_batched(
                fresh,
                |token| runtime.block_on(one_writing.authenticate(&token)).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
        g.bench_function("sqlite_ring4_retired_first_use_rehashed", |b| {
            b.iter_batched(
                fresh,
                |token| runtime.block_on(four_writing.authenticate(&token)).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = floor, generate, issue_without_store, issue_memory_store, reject_malformed, scope_check,
        json, two_threads, authenticate_1m, keyring
}
criterion_main!(benches);
