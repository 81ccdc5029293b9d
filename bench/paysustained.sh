#!/usr/bin/env bash
# The payments workload held at a rate, with ledgerd, the simulated channel and the load
# generator as three processes (issue 9's voucher target, measured as ledgerd would run).
#
#   bash bench/paysustained.sh [--rates 10000,20000] [--seconds 30] [--runs 1] [--bin DIR] [-- bench flags]
#
#   --rates R,...  orders a second offered, one set of runs per rate (default 10000,20000)
#   --seconds S    how long each rate is held: S*R orders a run (default 30)
#   --runs N       runs per rate; rates alternate within each round (default 1)
#   --bin DIR      take ledgerd, fakechannel and ledger-bench from DIR (default: go build them
#                  from this checkout into the temp dir)
#
# Each run is a fresh ledgerd on a fresh temp data dir with one channel, demo, served by a
# fresh `fakechannel` (20 ms to decide each request; its record book and pending callbacks
# sized as ledger-bench sizes its embedded channel, so that it neither answers 503 full nor
# drops a notice), driven by `ledger-bench --addr --workload payments --batch 25 --concurrency
# 128 --accounts 5000` open loop at the rate. Bench flags after -- go to ledger-bench last
# (not --orders, --accounts, --rate, --json or --repeat: the script sets those). All three at
# the same nice, sharing the machine's cores; each run ends with `sync`. Printed: a line a run
# (completed orders a second, voucher p50/p99 from when each call fell due, the generator's own
# lateness, orders failed and refused by result, ledgerd's CPU seconds after funding and its
# CPU an order, notices the channel dropped). A 6-second run flatters: the collector's pauses,
# not the cores, set its tail, and Pebble's L0 has not filled yet (bench/RESULTS.md, session 23).
set -euo pipefail

rates=10000,20000 seconds=30 runs=1 bindir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) rates="${2:?}"; shift 2 ;;
    --seconds) seconds="${2:?}"; shift 2 ;;
    --runs) runs="${2:?}"; shift 2 ;;
    --bin) bindir="${2:?}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) echo "paysustained: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
die() { echo "paysustained: $*" >&2; exit 1; }
[[ "$rates" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--rates '$rates' is not a list of positive integers (10000,20000)"
IFS=, read -r -a ratelist <<<"$rates"
for v in "$seconds" "$runs"; do [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "'$v' is not a positive integer"; done
if [ -n "$bindir" ]; then
  for b in ledgerd fakechannel ledger-bench; do [ -x "$bindir/$b" ] || die "--bin $bindir has no $b"; done
fi
command -v curl >/dev/null || die "curl is needed (to wait for ledgerd's /healthz)"
command -v python3 >/dev/null || die "python3 is needed (to read ledger-bench's JSON)"

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/paysustained.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "paysustained: interrupted" >&2; exit 130' INT TERM
built="binaries from $bindir"
if [ -z "$bindir" ]; then
  bindir="$work/bin"; mkdir -p "$bindir"
  (cd "$repo" && go build -o "$bindir" ./cmd/ledgerd ./cmd/fakechannel ./cmd/ledger-bench)
  built="built from $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')"
fi

. "$repo/bench/lib.sh" # free_port, wait_up

users=5000
printf 'paysustained-secret-of-enough-bytes' >"$work/secret"

# one RATE [bench flags]: a run at RATE orders a second; prints its line.
one() {
  local rate=$1; shift
  local orders=$((rate * seconds)) d fp lp mp rc=0
  d="$(mktemp -d "$work/run.XXXXXX")"; fp="$(free_port)"; lp="$(free_port)"; mp="$(free_port)"
  # Sized as bench/paylayer.go sizes the embedded channel (fakeRecordsMin, fakePendingCallbacksMax).
  "$bindir/fakechannel" --addr "127.0.0.1:$fp" --latency 20ms --secret-file "$work/secret" --log-level warn \
    --max-records $((2 * (orders + users) > 1000000 ? 2 * (orders + users) : 1000000)) \
    --max-pending-callbacks 1000000 >"$d/fake.log" 2>&1 &
  pids=($!)
  wait_up fakechannel "${pids[0]}" "$d/fake.log" "http://127.0.0.1:$fp/" any # no health path: any answer
  "$bindir/ledgerd" --data-dir "$d/data" --listen "127.0.0.1:$lp" --metrics-listen "127.0.0.1:$mp" \
    --admin-listen "127.0.0.1:$(free_port)" --notify-listen "127.0.0.1:$(free_port)" \
    --channel "demo=http://127.0.0.1:$fp" --channel-secret "demo=$work/secret" --channel-rate 100000 >"$d/log" 2>&1 &
  pids+=($!)
  wait_up ledgerd "${pids[1]}" "$d/log" "http://127.0.0.1:$mp/healthz"
  "$bindir/ledger-bench" --addr "127.0.0.1:$lp" --metrics-addr "127.0.0.1:$mp" --quiet --json "$d/r.json" \
    --workload payments --channel demo --rate "$rate" --orders "$orders" --accounts "$users" --batch 25 \
    --concurrency 128 "$@" >"$d/out" 2>&1 &
  pids+=($!)
  wait "${pids[2]}" || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -30 "$d/out" >&2; echo "(ledgerd's log: $(wc -l <"$d/log") lines; the channel's: $(wc -l <"$d/fake.log"))" >&2
    die "ledger-bench failed (exit $rc; its output's end above)"
  fi
  kill -INT "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
  kill -INT "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
  pids=()
  python3 - "$d/r.json" "$rate" "$seconds" "$(grep -c 'notice dropped' "$d/fake.log" || true)" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
by = lambda k: ", ".join(f"{n} {c:,}" for n, c in sorted((r.get(k) or {}).items())) or "none"
cpu = r.get("server_cpu_seconds")  # from after funding to the end of the drain
per = f"{cpu:.1f} CPU s, {cpu / max(r['orders_accepted'], 1) * 1e6:.0f} µs an order" if cpu else "CPU not read"
print(f"{int(sys.argv[2]):>7,}/s for {sys.argv[3]} s: completed {r['orders_completed_per_second']:,.0f}/s, "
      f"voucher p50 {r['latency_p50_ms']:.1f} ms p99 {r['latency_p99_ms']:.1f} ms "
      f"(sent late p99 {r.get('sent_late_p99_ms', 0):.1f} ms), "
      f"failed {r.get('orders_failed', 0):,} ({by('orders_failed_by_result')}), "
      f"refused {r.get('orders_refused', 0):,} ({by('orders_refused_by_result')}), "
      f"ledgerd {per}, notices dropped {sys.argv[4]}", flush=True)
EOF
  rm -rf "$d"; sync
}

echo "payments held $seconds s a rate, three processes, $built"
for _ in $(seq "$runs"); do
  for rate in "${ratelist[@]}"; do one "$rate" "$@"; done
done
