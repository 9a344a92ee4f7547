#![allow(missing_docs)]
//! Leak scanning throughput on 100 MB inputs, in bytes per second.
//!
//! `cargo bench --bench scan`
//!
//! The log input is realistic text with a token every few hundred kilobytes and many
//! near-misses on every line: `dyn_` identifiers, look-alike tokens with a wrong
//! checksum, `xdyn_…` and over-long runs, hexadecimal hashes and base64 blobs.

use apitoken::TokenFormat;
use apitoken::scan::{redact, scan};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

const SIZE: usize = 100 * 1_000_000;
const ALNUM: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const HEX: &[u8; 16] = b"0123456789abcdef";
const WORDS: &[&str] = &[
    "request",
    "completed",
    "token",
    "environment",
    "user",
    "session",
    "refresh",
    "cache",
    "miss",
    "retrying",
    "upstream",
    "timeout",
    "dynamic",
    "payload",
    "ok",
];

fn push_random(out: &mut String, rng: &mut StdRng, alphabet: &[u8], n: usize) {
    for _ in 0..n {
        out.push(char::from(alphabet[rng.random_range(0..alphabet.len())]));
    }
}

/// About `size` bytes of log lines; returns the text and how many real tokens it holds.
fn logs(size: usize) -> (String, usize) {
    let format = TokenFormat::dynamic();
    let mut rng = StdRng::seed_from_u64(5);
    let mut out = String::with_capacity(size + 512);
    let mut tokens = 0;
    let mut line = 0u64;
    while out.len() < size {
        line += 1;
        out.push_str("2026-03-01T12:");
        out.push_str(&format!(
            "{:02}:{:02}.{:06}Z ",
            line / 60 % 60,
            line % 60,
            line % 999_983
        ));
        out.push_str(["INFO ", "DEBUG ", "WARN ", "ERROR "][rng.random_range(0..4)]);
        out.push_str("request_id=");
        push_random(&mut out, &mut rng, HEX, 32);
        out.push_str(" user_id=");
        out.push_str(&rng.random_range(1..100_000u32).to_string());
        out.push_str(" path=/v1/environments/");
        push_random(&mut out, &mut rng, HEX, 8);
        out.push_str("/tokens ");
        for _ in 0..rng.random_range(2..6) {
            out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            out.push(' ');
        }
        match rng.random_range(0..12) {
            // Near-misses shaped like tokens: a look-alike with a (almost surely) wrong
            // checksum, one glued to a word, one too long, a `dyn_` identifier.
            0 => {
                out.push_str("token=dyn_");
                push_random(&mut out, &mut rng, ALNUM, 36);
            }
            1 => {
                out.push_str("key=xdyn_");
                push_random(&mut out, &mut rng, ALNUM, 36);
            }
            2 => {
                out.push_str("blob=dyn_");
                push_random(&mut out, &mut rng, ALNUM, 80);
            }
            3 => out.push_str("module=dyn_config feature=dyn_routing"),
            // Long letter-and-digit runs: a SHA-256 and a base64 blob.
            4 => {
                out.push_str("sha256=");
                push_random(&mut out, &mut rng, HEX, 64);
            }
            5 => {
                out.push_str("data=");
                push_random(&mut out, &mut rng, ALNUM, 120);
                out.push_str("==");
            }
            _ => out.push_str("status=200 latency_ms=12 bytes=5120"),
        }
        // A real token on about one line in 5000.
        if rng.random_range(0..5000) == 0 {
            out.push_str(" Authorization: Bearer ");
            out.push_str(format.generate(&mut rng).expose_secret());
            tokens += 1;
        }
        out.push('\n');
    }
    (out, tokens)
}

fn random_bytes(size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    StdRng::seed_from_u64(6).fill_bytes(&mut bytes);
    bytes
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
    bytes: usize,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g
}

fn bench_scan(c: &mut Criterion) {
    let format = TokenFormat::dynamic();
    let (text, tokens) = logs(SIZE);
    assert_eq!(scan(&format, text.as_bytes()).count(), tokens);
    let binary = random_bytes(SIZE);

    let mut g = configure(c, "scan", text.len());
    g.bench_function("logs_100MB", |b| {
        b.iter(|| scan(&format, black_box(text.as_bytes())).count())
    });
    g.finish();

    let mut g = configure(c, "scan", binary.len());
    g.bench_function("random_bytes_100MB", |b| {
        b.iter(|| scan(&format, black_box(&binary)).count())
    });
    g.finish();

    let mut g = configure(c, "redact", text.len());
    g.bench_function("logs_100MB", |b| {
        b.iter(|| redact(&format, black_box(&text)).len())
    });
    g.finish();
}

criterion_group!(benches, bench_scan);
criterion_main!(benches);
