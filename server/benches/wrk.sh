#!/usr/bin/env bash
# Requests per second and latency of the server under load, with wrk (Debian's package),
# on SQLite and on PostgreSQL: two servers over the same database, the default one (its
# cache follows the event log) and one started with --no-cache (a store read per
# authentication). Cases: a 404 (the floor: accept loop, middleware, logging, no store),
# GET /healthz, and GET /verify and GET /api/v0/tokens/me on each server (each
# authenticates a token). The cases are measured one after another in rounds, so that
# they meet the same noise; the table gives each one's median over the rounds of requests
# per second and of the p50 and p99 latency, and the ratio of its throughput to the 404's.
#
#   bash server/benches/wrk.sh                 # 3 rounds of 10 s per endpoint
#   ROUNDS=5 SECONDS_EACH=20 CONNECTIONS=32 bash server/benches/wrk.sh
#   STORES=sqlite bash server/benches/wrk.sh
#
# On a 2-core machine wrk and the server share the cores: the figures are the whole
# machine's, not the server's alone. The server logs at warn (a request line per
# request at info would measure the terminal or the file behind it).
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds="${ROUNDS:-3}"
seconds="${SECONDS_EACH:-10}"
connections="${CONNECTIONS:-16}"
threads="${THREADS:-2}"
stores="${STORES:-sqlite postgres}"
pg_base="${APITOKEN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet -p apitoken-server -p apitoken-cli
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
schema="apitoken_wrk_$$"
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  psql -q "$pg_base" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

environment=0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d
pids=()
start() { # args: the server's arguments; sets $address
  local out="$work/stdout.${#pids[@]}"
  "$bin/apitoken-server" --listen 127.0.0.1:0 --log-level warn "$@" >"$out" 2>>"$work/server.log" &
  pids+=($!)
  address=
  for _ in $(seq 1 100); do
    address=$(sed -n 's|^listening on http://||p' "$out")
    [ -n "$address" ] && return
    sleep 0.1
  done
  echo "the server did not start"; cat "$work/server.log"; exit 1
}
stop() { for pid in "${pids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done; pids=(); }

# One wrk run: prints "requests_per_second p50_ms p99_ms"; fails on an answer other than
# 2xx, except for the path that answers 404 on purpose.
measure() { # args: address, path
  wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency \
    -H "Authorization: Bearer $token" "http://$1$2" |
    awk -v path="$2" '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
      $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
      $1 == "Requests/sec:" { rps = $2 }
      $1 == "Non-2xx" && path != "/no-such-endpoint" { bad = $NF }
      END { if (bad > 0) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 } printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Each case: which server (the default, whose cache follows the event log, or one started
# with --no-cache) and which path. A 404 goes through the same accept loop, middleware and
# logging but touches no store: the floor a request that authenticates is held to.
cases=("cached /no-such-endpoint" "cached /healthz" "cached /verify?scope=environment.apiTokens.read"
  "cached /api/v0/tokens/me" "uncached /api/v0/tokens/me" "uncached /verify?scope=environment.apiTokens.read")
echo "wrk -t$threads -c$connections, $seconds s per case, $rounds rounds; $(nproc) CPUs; $(date -u +%FT%TZ)"
echo
echo "| store | server | endpoint | requests/s (median) | vs 404 | p50 ms | p99 ms |"
echo "|---|---|---|---:|---:|---:|---:|"
for store in $stores; do
  case "$store" in
    sqlite)
      db="$work/apitoken.db"
      token=$("$bin/apitoken" issue --db "$db" --env "$environment" --note wrk \
        --scope environment.apiTokens.read | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"]["rawToken"])')
      storage=(--db "$db") ;;
    postgres)
      psql -q "$pg_base" -c "CREATE SCHEMA $schema" >/dev/null
      separator='?'; [[ "$pg_base" == *'?'* ]] && separator='&'
      url="${pg_base}${separator}options=-c%20search_path%3D$schema"
      token=$(DATABASE_URL="$url" "$bin/apitoken" issue --env "$environment" --note wrk \
        --scope environment.apiTokens.read | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"]["rawToken"])')
      storage=(--database-url "$url") ;;
    *) echo "unknown store $store" >&2; exit 1 ;;
  esac
  start "${storage[@]}"; cached=$address
  start "${storage[@]}" --no-cache; uncached=$address
  for c in "${cases[@]}"; do : >"$work/${c//[^a-z]/_}"; done
  measure "$cached" /healthz >/dev/null # warm-up
  for _ in $(seq 1 "$rounds"); do
    for c in "${cases[@]}"; do
      server=${c%% *}; path=${c#* }
      [ "$server" = cached ] && addr=$cached || addr=$uncached
      measure "$addr" "$path" >>"$work/${c//[^a-z]/_}"
    done
  done
  stop
  floor=$(cut -d' ' -f1 "$work/cached__no_such_endpoint" | median)
  for c in "${cases[@]}"; do
    file="$work/${c//[^a-z]/_}"
    server=${c%% *}; path=${c#* }
    rps=$(cut -d' ' -f1 "$file" | median)
    p50=$(cut -d' ' -f2 "$file" | median)
    p99=$(cut -d' ' -f3 "$file" | median)
    ratio=$(awk -v a="$rps" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')
    echo "| $store | $server | \`GET ${path%%\?*}\` | $rps | $ratio | $p50 | $p99 |"
  done
done
