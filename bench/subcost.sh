#!/usr/bin/env bash
# What one event-stream subscriber costs the writes (issue 10's budget: at most 10%).
#
#   bash bench/subcost.sh [--pairs N] [--batch B] [--transfers N] [--bin DIR] [-- bench flags]
#
#   --pairs N      pairs of runs, one without and one with a subscriber (default 10)
#   --batch B      transfers per request (default 8190)
#   --transfers N  transfers per run (default 1000000)
#   --bin DIR      take ledgerd and ledger-bench from DIR (default: go build them from this
#                  checkout into the temp dir)
#
# Each run is a fresh ledgerd on a fresh temp data dir, driven from another process by
# `ledger-bench --addr --metrics-addr --json` (with `--subscribe` for the subscriber's run:
# it follows the stream over gRPC from ledgerd's head, in ledger-bench's process); ledgerd is
# stopped with SIGINT, its dir removed, and every run ends with `sync`, so that its writeback
# does not land on the next one. The order within a pair alternates (without-with, then
# with-without): the second run of a pair tends to be faster, which a fixed order turns into
# a bias. Printed: each pair's rates and ledgerd CPU seconds, then the medians (min-max) over
# the pairs of the subscriber run's rate and ledgerd CPU against its pair's run without.
set -euo pipefail

pairs=10 batch=8190 transfers=1000000 bindir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) pairs="${2:?}"; shift 2 ;;
    --batch) batch="${2:?}"; shift 2 ;;
    --transfers) transfers="${2:?}"; shift 2 ;;
    --bin) bindir="${2:?}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) echo "subcost: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
die() { echo "subcost: $*" >&2; exit 1; }
for v in "$pairs" "$batch" "$transfers"; do [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "'$v' is not a positive integer"; done
command -v curl >/dev/null || die "curl is needed (to wait for ledgerd's /healthz)"
command -v python3 >/dev/null || die "python3 is needed (to read ledger-bench's JSON)"

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/subcost.XXXXXX")"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "$bindir" ]; then
  bindir="$work/bin"; mkdir -p "$bindir"
  (cd "$repo" && go build -o "$bindir" ./cmd/ledgerd ./cmd/ledger-bench)
fi

. "$repo/bench/lib.sh" # free_port, wait_up

# one KIND [bench flags]: a run; appends "KIND rate cpu_seconds" to $work/runs.
one() {
  local kind=$1; shift
  local d lp mp
  d="$(mktemp -d "$work/run.XXXXXX")"; lp="$(free_port)"; mp="$(free_port)"
  "$bindir/ledgerd" --data-dir "$d/data" --listen "127.0.0.1:$lp" --metrics-listen "127.0.0.1:$mp" \
    --admin-listen "127.0.0.1:$(free_port)" --notify-listen "127.0.0.1:$(free_port)" >"$d/log" 2>&1 &
  pid=$!
  wait_up ledgerd "$pid" "$d/log" "http://127.0.0.1:$mp/healthz"
  "$bindir/ledger-bench" --addr "127.0.0.1:$lp" --metrics-addr "127.0.0.1:$mp" --quiet --json "$d/r.json" \
    --transfers "$transfers" --batch "$batch" "$@" >"$d/out" 2>&1 || { cat "$d/out" "$d/log" >&2; die "ledger-bench failed"; }
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], r["transfers_per_second"], r["server_cpu_seconds"])' \
    "$d/r.json" "$kind" >>"$work/runs"
  rm -rf "$d"; sync
}

: >"$work/runs"
for i in $(seq "$pairs"); do
  if [ $((i % 2)) -eq 1 ]; then one none "$@"; one sub --subscribe "$@"
  else one sub --subscribe "$@"; one none "$@"; fi
  echo "# pair $i of $pairs done" >&2
done

echo "subscriber's cost, batch $batch, $transfers transfers a run, $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
python3 - "$work/runs" <<'EOF'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
rate, cpu = [], []
for a, b in zip(runs[0::2], runs[1::2]):
    none, sub = (a, b) if a[0] == "none" else (b, a)
    rate.append(float(sub[1]) / float(none[1]) - 1)
    cpu.append(float(sub[2]) / float(none[2]) - 1)
    print(f"pair: without {float(none[1]):,.0f}/s {float(none[2]):.2f} CPU s, with {float(sub[1]):,.0f}/s {float(sub[2]):.2f} CPU s")
for name, xs in (("write rate", rate), ("ledgerd CPU", cpu)):
    print(f"{name}: {statistics.median(xs):+.1%} (min {min(xs):+.1%}, max {max(xs):+.1%}) over {len(xs)} pairs")
EOF
