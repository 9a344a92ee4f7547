#!/usr/bin/env bash
# Fuzzes every target in turn (one at a time, at the lowest priority), then folds what the
# fuzzer found back into the committed corpora, minimized. See README.md.
#
#   fuzz/run-all.sh                 # 600 s per target
#   SECONDS_PER_TARGET=60 fuzz/run-all.sh parse_token json
#
# Logs go to /tmp/fuzz-<target>.log; the working corpora to /tmp/fuzz-work/<target>.
set -uo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

seconds="${SECONDS_PER_TARGET:-600}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parse_token note_scope json scan_redact issuer_state leak_report)

# Inputs longer than these add nothing (tokens are at most 87 bytes, an issuer_state input
# holds at most 64 operations) and only make the corpora bigger.
bytes() { find "$1" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }'; }

max_len() {
  case "$1" in
    parse_token) echo 256 ;;
    note_scope) echo 512 ;;
    issuer_state) echo 1024 ;;
    leak_report) echo 4096 ;;
    *) echo 2048 ;;
  esac
}

nice -n 19 cargo fuzz build || exit 1
status=0
for target in "${targets[@]}"; do
  log="/tmp/fuzz-$target.log"
  work="/tmp/fuzz-work/$target"
  mkdir -p "$work"
  before=$(find "corpus/$target" -type f | wc -l)
  before_bytes=$(bytes "corpus/$target")
  echo "== $target: ${seconds}s, $before committed inputs ($before_bytes bytes), log $log"
  start=$(date +%s)
  nice -n 19 cargo fuzz run "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  echo "   exit $rc after $((end - start))s: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
  if [ $rc -ne 0 ]; then
    status=1
    echo "   CRASH: see $log and artifacts/$target/"
    continue
  fi
  # Keep the committed corpus small: add only the inputs that bring new coverage.
  # `-use_counters=0`: compare edges only, not hit counts (about a fifth of the files).
  nice -n 19 cargo fuzz cmin "$target" "$work" -- -max_len="$(max_len "$target")" \
    -use_counters=0 >>"$log" 2>&1
  nice -n 19 cargo fuzz run "$target" "corpus/$target" "$work" -- -merge=1 \
    -use_counters=0 -max_len="$(max_len "$target")" >>"$log" 2>&1
  after=$(find "corpus/$target" -type f | wc -l)
  echo "   corpus/$target: $before -> $after inputs ($(bytes "corpus/$target") bytes)"
done
exit $status
