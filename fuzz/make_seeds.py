#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

Run from anywhere: `python3 fuzz/make_seeds.py`. It rewrites only `seed-*` files; inputs
the fuzzer found (named by their SHA-1) are left alone. Everything here is small on
purpose: the corpora are committed and replayed by tests/fuzz_replay.rs in every CI run.
"""

import json
import pathlib
import struct
import zlib

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

DYNAMIC = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
GITHUB = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

REFERENCE = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC"

# The tokens the parse_token fixtures hold (issued with StdRng::seed_from_u64(FIXTURE_SEED)
# in tests/fuzz_targets/parse_token.rs), one per format.
FIXTURES = [
    "dyn_7XwaBFVr5IMNfjbZR8iQ0oBVhsaNE14bTAgR",
    "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",
    "longprefix16char_7xWAbfvR5imnFJBzr8Iq0ObvHSAne1zqOWjclu3ZBS8611sZhsRDDIzo5idSJuMa16OEJh",
    "k_7XwaBFVr5IMNfjbZR8iQ0o1wb41u",
]

REFERENCE_SCOPES = [
    "waas.delegatedAccess.signMessage",
    "waas.authenticate",
    "environment.settings.read",
    "environment.settings.write",
    "environment.apiTokens.read",
    "environment.apiTokens.write",
    "environment.users.read",
    "environment.users.write",
    "environment.analytics.read",
    "environment.webhooks.read",
    "environment.webhooks.write",
    "environment.events.read",
    "environment.events.write",
    "environment.balances.read",
]


def checksum(random: str, digits: bytes) -> str:
    n = zlib.crc32(random.encode())
    out = []
    for _ in range(6):
        out.append(chr(digits[n % 62]))
        n //= 62
    return "".join(reversed(out))


def token(prefix: str, random: str, digits: bytes = DYNAMIC) -> str:
    return f"{prefix}_{random}{checksum(random, digits)}"


RANDOM_30 = "aGLjTe3TUN40vSE75sTtgUx9AjIe0q"
RANDOM_64 = "Zz09" * 16
GHP = token("ghp", RANDOM_30, GITHUB)
LONG = token("longprefix16char", RANDOM_64, GITHUB)
SHORT = token("k", RANDOM_30[:22], DYNAMIC)
assert token("dyn", RANDOM_30) == REFERENCE


def write(target: str, seeds: dict) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("seed-*"):
        old.unlink()
    for name, content in seeds.items():
        data = content.encode() if isinstance(content, str) else content
        (directory / f"seed-{name}").write_bytes(data)


def parse_token() -> dict:
    seeds = {
        "reference": REFERENCE,
        "reference-bearer": f"Bearer {REFERENCE}",
        "reference-bearer-lowercase": f"bearer {REFERENCE}",
        "reference-bearer-spaces": f"  BEARER \t {REFERENCE}  \n",
        "reference-bearer-twice": f"Bearer Bearer {REFERENCE}",
        "reference-basic": f"Basic {REFERENCE}",
        "reference-bearer-no-space": f"Bearer{REFERENCE}",
        "reference-checksum-typo": REFERENCE[:-1] + "D",
        "reference-random-typo": REFERENCE[:10] + "X" + REFERENCE[11:],
        "reference-transposed": REFERENCE[:5] + REFERENCE[6] + REFERENCE[5] + REFERENCE[7:],
        "reference-truncated": REFERENCE[:-1],
        "reference-extended": REFERENCE + "A",
        "reference-github-checksum": token("dyn", RANDOM_30, GITHUB),
        "reference-upper-prefix": "DYN" + REFERENCE[3:],
        "reference-non-ascii": REFERENCE[:-1] + "é",
        "prefix-only": "dyn_",
        "underscore": "_",
        "ghp": GHP,
        "long": LONG,
        "short": SHORT,
        "prefix-17": token("abcdefghijklmnopq", RANDOM_30),
        "prefix-digit-first": token("1dyn", RANDOM_30),
        "random-21": token("dyn", RANDOM_30[:21]),
        "random-65": token("dyn", RANDOM_64 + "a"),
    }
    for i, fixture in enumerate(FIXTURES):
        seeds[f"fixture-{i}"] = fixture
        seeds[f"fixture-{i}-bearer"] = f"Bearer {fixture}"
    return seeds


def note_scope() -> dict:
    return {
        "note": "CI deploys",
        "note-padded": "  CI deploys  ",
        "note-reference": "<string>",
        "note-100": "a" * 100,
        "note-101": "a" * 101,
        "note-100-emoji": "🔑" * 100,
        "note-101-emoji": "🔑" * 101,
        "note-zwj": "deploy 👩‍💻 bot",
        "note-newline": "CI\ndeploys",
        "note-bell": "CI\x07deploys",
        "note-bidi": "CI \u202edeploys",
        "note-line-separator": "CI\u2028deploys",
        "note-whitespace": " \t ",
        "note-json": json.dumps("CI deploys"),
        "note-json-escape": '"CI\\u0000deploys"',
        "scopes-reference": ",".join(REFERENCE_SCOPES),
        "scopes-json": json.dumps(["waas.authenticate", "environment.apiTokens.read"]),
        "scopes-json-empty": "[]",
        "scopes-json-duplicates": json.dumps(["b.read", "a.read", "b.read"]),
        "scopes-json-bad": json.dumps(["environment..read"]),
        "scopes-json-number": "[1]",
        "scope-extension": "gasless.write all.read",
        "scope-100": "a" * 49 + "." + "b" * 50,
        "scope-101": "a" * 50 + "." + "b" * 50,
        "scope-edges": ".a a. a..b a b_c-d.e !x",
        "scope-json": json.dumps("environment.apiTokens.write"),
    }


CREATOR = {
    "id": "95b11417-f18f-457f-8804-68e361f9164f",
    "alias": "<string>",
    "firstName": "<string>",
    "lastName": "<string>",
    "email": "jsmith@example.com",
}
ENV = "95b11417-f18f-457f-8804-68e361f9164f"


def token_json(**changes) -> dict:
    body = {
        "id": "95b11417-f18f-457f-8804-68e361f9164f",
        "rawToken": REFERENCE,
        "checksum": "4n3LFC",
        "createdBy": CREATOR,
        "createdAt": "2023-11-07T05:31:56Z",
        "active": True,
        "note": "<string>",
        "projectEnvironmentId": ENV,
        "projectEnvironment": {"id": ENV},
        "scopes": [],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def json_seeds() -> dict:
    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    token = token_json()
    del token["rawToken"]
    return {
        "request-reference": '{\n  "note": "<string>",\n  "scopes": []\n}\n',
        "request-full": dump(
            {
                "note": "CI deploys 🔑",
                "scopes": ["environment.apiTokens.read", "waas.authenticate"],
                "expiresAt": "2030-01-01T00:00:00.123456Z",
            }
        ),
        "request-offset": dump({"note": "x", "expiresAt": "2030-01-01T02:00:00+02:00"}),
        "request-year-0": dump({"note": "x", "expiresAt": "0000-01-01T00:30:00+01:00"}),
        "response-reference": dump({"token": token_json()}),
        "response-github": dump(
            {"token": token_json(rawToken=GHP, checksum=GHP[-6:])}
        ),
        "response-checksum-differs": dump({"token": token_json(checksum="AAAAAA")}),
        "response-times": dump(
            {
                "token": token_json(
                    expiresAt="9999-12-31T23:59:59.999999999Z",
                    lastUsedAt="2016-12-31T23:59:60Z",
                    revokedAt="2024-02-29T12:00:00.5-03:30",
                    active=False,
                    scopes=["environment.users.read", "environment.events.write"],
                )
            }
        ),
        "response-environment-object-only": dump(
            {"token": token_json(projectEnvironmentId=None)}
        ),
        "response-environment-differs": dump(
            {"token": token_json(projectEnvironment={"id": CREATOR["id"][:-1] + "0"})}
        ),
        "token-reference": dump(token),
        "token-minimal-creator": dump(dict(token, createdBy={"id": CREATOR["id"]})),
    }


def scan_redact() -> dict:
    pad = "x" * 60 + " "
    return {
        "log": "GET /v1?token=dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC&x=1 (dyn_notAToken)",
        "every-format": f"{REFERENCE}\n{GHP}\n{LONG}\n{SHORT}\n",
        "adjacent": f"{REFERENCE}-{REFERENCE},{GHP}",
        "quoted": f'{{"rawToken":"{REFERENCE}","k":"{SHORT}"}}',
        "not-at-boundary": f"x{REFERENCE} _{REFERENCE} {REFERENCE}a 9{SHORT}",
        "near-misses": f"{REFERENCE[:-1]}D {REFERENCE[:-1]} {REFERENCE}A dyn_ dyn_dyn_",
        "doubled-prefix": f"dyn_{REFERENCE} dyn__{RANDOM_30} k_k_{RANDOM_30}",
        "block-boundary": pad + REFERENCE + pad + LONG,
        "redacted": "dyn_…4n3LFC ghp_…" + GHP[-6:],
        "binary": b"\x00\xff\xfe" + REFERENCE.encode() + b"\x80" + SHORT.encode() + b"\xc3",
        "at-end": "token: " + REFERENCE,
    }


def issuer_state() -> dict:
    """Inputs decoded by `arbitrary` as tests/fuzz_targets/issuer_state.rs does."""

    def setup(fmt, keyed, limit, seed, cap=0, depth=0, fan_out=0):
        # limit is stored as `limit % 4 + 1`; cap, depth and fan_out as `n % m`, 0 for none
        # (cap: 0 or 3 to 17; depth and fan_out: 0 or 1 to 3)
        cap = 0 if cap == 0 else cap - 2
        return struct.pack("<BBBQBBB", fmt, keyed, limit - 1, seed, cap, depth, fan_out)

    ops = 10  # variants of `Op`

    def variant(k):
        # `arbitrary` picks variant (x * ops) >> 32 for a u32 x: the smallest such x.
        return struct.pack("<I", -(-(k << 32) // ops))

    def opt_i16(v):
        return b"\x00" if v is None else b"\x01" + struct.pack("<h", v)

    def opt_u8(v):
        return b"\x00" if v is None else b"\x01" + struct.pack("<B", v)

    def issue(env, scopes, expires_in=None):
        return variant(0) + struct.pack("<BH", env, scopes) + opt_i16(expires_in)

    def delegate(parent, env, scopes, expires_in=None):
        return variant(1) + struct.pack("<BBH", parent, env, scopes) + opt_i16(expires_in)

    def authenticate(tok, bearer=False, typo=None):
        t = b"\x00" if typo is None else b"\x01" + bytes(typo)
        return variant(2) + struct.pack("<BB", tok, bearer) + t

    def authorize(tok, env, required):
        return variant(3) + struct.pack("<BBH", tok, env, required)

    def revoke(tok, env, by=None):
        return variant(4) + struct.pack("<BB", tok, env) + opt_u8(by)

    def revoke_unknown(env, id_):
        return variant(5) + struct.pack("<BQ", env, id_)

    def rotate(tok, env, grace, by=None):
        return variant(6) + struct.pack("<BBH", tok, env, grace) + opt_u8(by)

    def advance(seconds):
        return variant(7) + struct.pack("<h", seconds)

    def get(tok, env, by=None):
        return variant(8) + struct.pack("<BB", tok, env) + opt_u8(by)

    def purge(older_than):
        return variant(9) + struct.pack("<H", older_than)

    read = 1 << 4  # environment.apiTokens.read
    write = 1 << 5  # environment.apiTokens.write
    unknown = 1 << 14  # a scope outside the catalog
    seeds = {}
    for fmt in range(4):
        seeds[f"f{fmt}-lifecycle"] = setup(fmt, fmt % 2, 4, fmt) + b"".join(
            [
                issue(0, read),
                authenticate(0),
                authenticate(0, True),
                authorize(0, 0, read),
                authorize(0, 0, read | write),
                authorize(0, 1, read),
                revoke(0, 1),
                revoke(0, 0),
                authenticate(0),
                revoke(0, 0),
                revoke_unknown(0, 42),
            ]
        )
    seeds["expiry"] = setup(0, 0, 2, 1) + b"".join(
        [
            issue(0, read, 60),
            issue(0, read, 0),
            issue(0, read, -5),
            advance(59),
            authenticate(0),
            advance(1),
            authenticate(0),
            advance(-30),
            authenticate(0),
            advance(100),
        ]
    )
    seeds["limit-and-rotation"] = setup(1, 1, 1, 2) + b"".join(
        [
            issue(0, read),
            issue(0, read),
            issue(1, write),
            rotate(0, 0, 30),
            authenticate(0),
            authenticate(2),
            rotate(0, 0, 30),
            advance(31),
            authenticate(0),
            issue(0, read),
            rotate(0, 0, 0),
            rotate(1, 0, 0),
        ]
    )
    seeds["rotation-keeps-lifetime"] = setup(2, 0, 3, 3) + b"".join(
        [
            issue(2, read | write, 100),
            advance(50),
            rotate(0, 2, 10),
            advance(11),
            authenticate(0),
            authenticate(1),
            advance(-60),
            authenticate(0),
            authenticate(1),
            issue(2, 0),
            advance(200),
            rotate(1, 2, 5),
        ]
    )
    seeds["delegation"] = setup(3, 1, 4, 4) + b"".join(
        [
            issue(0, read | write),
            delegate(0, 0, read),
            delegate(0, 0, read | (1 << 6)),
            delegate(0, 0, unknown),
            delegate(0, 1, read),
            delegate(1, 0, read, 10),
            issue(0, unknown),
            revoke(0, 0),
            delegate(0, 0, read),
            authorize(1, 0, read),
        ]
    )
    seeds["delegated-authority"] = setup(0, 0, 4, 6) + b"".join(
        [
            issue(0, read | write),  # 0: R
            delegate(0, 0, write),  # 1: K, created by R
            delegate(1, 0, write),  # 2: G, created by K
            issue(0, read | write),  # 3: an unrelated admin token
            revoke(0, 0, 1),  # K revokes R: refused
            revoke(3, 0, 1),  # K revokes the admin token: refused
            get(0, 0, 1),
            rotate(3, 0, 10, 1),
            revoke(0, 1, 1),  # in another environment
            get(2, 0, 1),  # its own descendant
            rotate(2, 0, 0, 1),  # 4: G's successor
            revoke(4, 0, 1),
            revoke(1, 0, 1),  # itself
            revoke(1, 0, 0),  # R, a user's token, acts on all
        ]
    )
    seeds["successor-revoked-in-grace"] = setup(1, 0, 4, 7) + b"".join(
        [
            issue(0, read),
            delegate(0, 0, 0),
            rotate(0, 0, 600),  # 2: the successor; 0 in its grace period
            rotate(2, 0, 600),  # 3: and its successor
            authenticate(0),
            revoke(3, 0),  # ends the grace of 2 and 0, with 0's child
            authenticate(0),
            authenticate(1),
            revoke(3, 0),  # again: nothing more
        ]
    )
    # Issue 17: a delegated token rotated with no grace, its creator then revoked;
    # rotating it again is refused as rotated, not as not live.
    seeds["rotated-after-creator-revoked"] = setup(0, 0, 4, 8) + b"".join(
        [
            issue(0, write, 3600),
            delegate(0, 0, write),
            rotate(1, 0, 0),
            revoke(0, 0),
            rotate(1, 0, 60),
            rotate(2, 0, 60),
        ]
    )
    seeds["limits"] = setup(0, 0, 4, 9, cap=4, depth=1, fan_out=2) + b"".join(
        [
            issue(0, read | write),
            delegate(0, 0, read),
            delegate(1, 0, read),  # too deep
            delegate(0, 0, read),
            delegate(0, 0, read),  # a third live token of one creator
            revoke(1, 0),
            delegate(0, 0, read),
            issue(0, read),  # past the cap
            rotate(0, 0, 10),  # a rotation adds a token too
            issue(1, read),
        ]
    )
    seeds["purge"] = setup(2, 1, 4, 10) + b"".join(
        [
            issue(0, read | write, 10),
            delegate(0, 0, read),
            issue(0, read),
            issue(1, read),
            revoke(2, 0),
            advance(100),
            purge(50),
            authenticate(0),
            rotate(3, 1, 5),
            advance(30),
            purge(0),
            issue(0, read),
            purge(65535),
        ]
    )
    seeds["typos"] = setup(0, 0, 4, 5) + b"".join(
        [
            issue(0, 0),
            authenticate(0, False, (0, 1)),
            authenticate(0, True, (3, 7)),
            authenticate(0, False, (20, 200)),
            authenticate(0, True, (39, 3)),
        ]
    )
    return seeds

# The one token the leak_report target's issuer issues (StdRng::seed_from_u64(ISSUER_SEED)
# in tests/fuzz_targets/leak_report.rs).
LEAK_ISSUED = "dyn_4Vh1NQCv1hWtg59zqj1zREvaQSQ3Ae25Jh07"

# Vector A of ../shared/reference/secret-scanning.md (GitHub's documentation).
VECTOR_A_SIGNATURE = b"MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66YcAdjxji410VQV4xg=="
VECTOR_A_BODY = b'[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]'


def leak_report() -> dict:
    """The first line is the signature header, the rest the body."""

    def report(*matches: dict) -> bytes:
        return json.dumps(list(matches), separators=(",", ":")).encode()

    ours = {"token": LEAK_ISSUED, "type": "dynamic_api_token", "url": "https://github.com/o/r/blob/x/.env", "source": "Commit"}
    key_a = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAd\n"
        "AjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==\n"
        "-----END PUBLIC KEY-----\n"
    )
    return {
        "vector-a": VECTOR_A_SIGNATURE + b"\n" + VECTOR_A_BODY,
        "vector-a-flipped": VECTOR_A_SIGNATURE + b"\n" + VECTOR_A_BODY.replace(b"some_token", b"some_tokem"),
        "ours-twice": b"\n" + report(ours, ours, {"token": REFERENCE, "type": "t"}),
        "gitlab": b"x\n" + report({"token": LEAK_ISSUED, "type": "t", "url": ""}, {"token": "glpat-x", "type": "t", "url": None}),
        "escapes": b"\n" + b'[{"token":"dyn_4Vh1NQCv1hWtg59zqj1zREvaQSQ3Ae25Jh0\\u0037","type":"\\ud83d\\ude00","extra":{"a":[1,{"b":null}]}}]',
        "empty": b"\n[]",
        "not-array": b"\n" + b'{"token":"x","type":"t"}',
        "number-token": b"\n" + b'[{"token":7,"type":"t"}]',
        "deep": b"\n" + b'[{"token":"x","type":"t","skip":' + b"[" * 200 + b"]" * 200 + b"}]",
        "key-list": json.dumps({"public_keys": [{"key_identifier": "a", "key": key_a, "is_current": True}]}).encode(),
    }


def main() -> None:
    write("parse_token", parse_token())
    write("note_scope", note_scope())
    write("json", json_seeds())
    write("scan_redact", scan_redact())
    write("issuer_state", issuer_state())
    write("leak_report", leak_report())


if __name__ == "__main__":
    main()
