#!/usr/bin/env bash
# Requests per second and latency of the server under load, with wrk (Debian's package):
# GET /healthz (an axum handler that does no authentication, through the same server:
# accept loop, middleware, logging), GET /verify and GET /api/v0/tokens/me (each
# authenticates a token: one hash and one store look-up, plus the record for /tokens/me),
# on SQLite and on PostgreSQL. The three are measured one after another in rounds, so
# that they meet the same noise; the table gives each one's median over the rounds of
# requests per second and of the p50 and p99 latency, and the ratio of its throughput to
# /healthz's.
#
#   bash server/benches/wrk.sh                 # 3 rounds of 10 s per endpoint
#   ROUNDS=5 SECONDS_EACH=20 CONNECTIONS=64 bash server/benches/wrk.sh
#   STORES=sqlite bash server/benches/wrk.sh
#
# On a 2-core machine wrk and the server share the cores: the figures are the whole
# machine's, not the server's alone. The server logs at warn (a request line per
# request at info would measure the terminal or the file behind it).
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds="${ROUNDS:-3}"
seconds="${SECONDS_EACH:-10}"
connections="${CONNECTIONS:-32}"
threads="${THREADS:-2}"
stores="${STORES:-sqlite postgres}"
pg_base="${APITOKEN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet -p apitoken-server -p apitoken-cli
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
server_pid=
schema="apitoken_wrk_$$"
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql -q "$pg_base" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

environment=0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d
start() { # args: the server's storage arguments
  "$bin/apitoken-server" --listen 127.0.0.1:0 --log-level warn "$@" >"$work/stdout" 2>"$work/server.log" &
  server_pid=$!
  address=
  for _ in $(seq 1 100); do
    address=$(sed -n 's|^listening on http://||p' "$work/stdout")
    [ -n "$address" ] && return
    sleep 0.1
  done
  echo "the server did not start"; cat "$work/server.log"; exit 1
}
stop() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }

# One wrk run: prints "requests_per_second p50_ms p99_ms".
measure() { # args: path
  wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency \
    -H "Authorization: Bearer $token" "http://$address$1" |
    awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
      $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
      $1 == "Requests/sec:" { rps = $2 }
      $1 == "Non-2xx" { bad = $NF }
      END { if (bad > 0) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 } printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

paths=(/healthz "/verify?scope=environment.apiTokens.read" /api/v0/tokens/me)
echo "wrk -t$threads -c$connections, $seconds s per endpoint, $rounds rounds; $(nproc) CPUs; $(date -u +%FT%TZ)"
echo
echo "| store | endpoint | requests/s (median) | vs /healthz | p50 ms | p99 ms |"
echo "|---|---|---:|---:|---:|---:|"
for store in $stores; do
  case "$store" in
    sqlite)
      db="$work/apitoken.db"
      token=$("$bin/apitoken" issue --db "$db" --env "$environment" --note wrk \
        --scope environment.apiTokens.read | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"]["rawToken"])')
      start --db "$db" ;;
    postgres)
      psql -q "$pg_base" -c "CREATE SCHEMA $schema" >/dev/null
      separator='?'; [[ "$pg_base" == *'?'* ]] && separator='&'
      url="${pg_base}${separator}options=-c%20search_path%3D$schema"
      token=$(DATABASE_URL="$url" "$bin/apitoken" issue --env "$environment" --note wrk \
        --scope environment.apiTokens.read | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"]["rawToken"])')
      start --database-url "$url" ;;
    *) echo "unknown store $store" >&2; exit 1 ;;
  esac
  for path in "${paths[@]}"; do : >"$work/${path//[^a-z]/_}"; done
  measure /healthz >/dev/null # warm-up
  for _ in $(seq 1 "$rounds"); do
    for path in "${paths[@]}"; do measure "$path" >>"$work/${path//[^a-z]/_}"; done
  done
  stop
  base=$(cut -d' ' -f1 "$work/_healthz" | median)
  for path in "${paths[@]}"; do
    file="$work/${path//[^a-z]/_}"
    rps=$(cut -d' ' -f1 "$file" | median)
    p50=$(cut -d' ' -f2 "$file" | median)
    p99=$(cut -d' ' -f3 "$file" | median)
    ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
    echo "| $store | \`GET ${path%%\?*}\` | $rps | $ratio | $p50 | $p99 |"
  done
done
