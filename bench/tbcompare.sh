#!/usr/bin/env bash
# TigerBeetle against ledgerd on the same machine, alternated: the table at the top of
# bench/RESULTS.md. The project does not ship TigerBeetle; pass its binary's path.
#
#   bash bench/tbcompare.sh TIGERBEETLE [--transfers N] [--rounds R] [--rows 1,2,3,4,5,6] [--bin DIR]
#
#   --transfers N  transfers per run (env TRANSFERS, default 1000000)
#   --rounds R     rounds; every round runs each selected row once (env ROUNDS, default 3)
#   --rows LIST    which rows, comma-separated (env ROWS, default 1,2,3,4,5,6)
#   --bin DIR      take ledgerd and ledger-bench from DIR (env BIN_DIR; default: go build them
#                  from this checkout into the temp dir)
#   TMPDIR         where the temp dirs go (TigerBeetle's data file is ~1.1 GB)
#
# Rows (10,000 accounts unless said):
#   1  batch 8190, one batch in flight: `tigerbeetle benchmark --account-count=10000
#      --transfer-batch-size=8190` vs `ledger-bench --batch 8190 --concurrency 1`.
#      Target: >= 2x TigerBeetle, ledger p99 < 100 ms.
#   2  batch 8190, four in flight: ledger only (`--concurrency 4`), its ratio taken against
#      row 1's TigerBeetle run (TigerBeetle's benchmark has one client). Target: >= 500,000/s.
#   3  batch 100, one in flight: `--transfer-batch-size=100` vs `--batch 100 --concurrency 1`.
#      Target: >= 4x TigerBeetle.
#   4  one transfer per call from 1,024 callers: ledger only (`--batch 1 --concurrency 1024
#      --client-batching`). Target: >= 200,000/s, p99 < 20 ms.
#   5  1,000,000 accounts, batch 8190, one in flight: `--account-count=1000000` vs
#      `--accounts 1000000 --batch 8190 --concurrency 1`. Target: the ledger's rate >= 90% of
#      its row-1 rate in the same round, ledgerd RSS < 2 GiB.
#   6  row 4 as any gRPC caller can send it: one transfer per request on CreateTransfersStream,
#      1,024 callers sharing 4 streams (`--batch 1 --concurrency 1024 --streams 4`). Target:
#      as row 4.
#
# Each ledger run gets a fresh ledgerd on a fresh temp data dir (free loopback ports), driven by
# `ledger-bench --addr ... --metrics-addr ... --json`; ledgerd is stopped with SIGINT and its dir
# removed after. Each TigerBeetle run is `tigerbeetle benchmark` from a fresh temp dir (it
# formats a ~1.1 GB data file, not timed, and its server takes ~3.5 GB of memory); every run
# ends with `sync`, so that its writeback does not land on the next one; TigerBeetle
# and ledger runs alternate within a round (TigerBeetle first in odd rounds, the ledger first in
# even ones). Rows 2 and 5 also run row 1 (for their ratios) even when it is not selected.
# Reported: the median over the rounds (the mean of the middle two for an even count) with
# min-max; ratios are the median (min-max) of each round's pair. p99 is TigerBeetle's batch
# latency (whole ms) and ledger-bench's request latency.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

tb="${1:-}"
[ -n "$tb" ] || usage
case "$tb" in -h|--help) usage ;; esac
shift
transfers="${TRANSFERS:-1000000}"
rounds="${ROUNDS:-3}"
rows="${ROWS:-1,2,3,4,5,6}"
bindir="${BIN_DIR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --transfers) transfers="${2:?--transfers needs a value}"; shift 2 ;;
    --transfers=*) transfers="${1#*=}"; shift ;;
    --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
    --rounds=*) rounds="${1#*=}"; shift ;;
    --rows) rows="${2:?--rows needs a value}"; shift 2 ;;
    --rows=*) rows="${1#*=}"; shift ;;
    --bin) bindir="${2:?--bin needs a value}"; shift 2 ;;
    --bin=*) bindir="${1#*=}"; shift ;;
    -h|--help) usage ;;
    *) echo "tbcompare: unknown argument '$1'" >&2; usage ;;
  esac
done

die() { echo "tbcompare: $*" >&2; exit 1; }
[ -e "$tb" ] || die "TigerBeetle binary '$tb' not found (the project does not ship it; pass the path of a tigerbeetle binary)"
if [ ! -f "$tb" ] || [ ! -x "$tb" ]; then die "TigerBeetle binary '$tb' is not an executable file"; fi
tb="$(cd "$(dirname "$tb")" && pwd)/$(basename "$tb")"
[[ "$transfers" =~ ^[1-9][0-9]*$ ]] || die "--transfers must be a positive integer, not '$transfers'"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, not '$rounds'"
declare -A want=()
IFS=', ' read -r -a rowlist <<<"$rows"
for r in "${rowlist[@]}"; do
  case "$r" in 1|2|3|4|5|6) want[$r]=1 ;; '') ;; *) die "unknown row '$r' (rows are 1 to 6)" ;; esac
done
[ ${#want[@]} -gt 0 ] || die "no rows selected"
command -v curl >/dev/null || die "curl is needed (to wait for ledgerd's /healthz)"
if command -v jq >/dev/null; then json=jq
elif command -v python3 >/dev/null; then json=python3
else die "jq or python3 is needed to read ledger-bench's JSON"
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/tbcompare.XXXXXX")"
ledgerd_pid=""
child_pid=""
cleanup() {
  if [ -n "$child_pid" ] && kill -0 "$child_pid" 2>/dev/null; then
    kill -TERM "$child_pid" 2>/dev/null || true
    wait "$child_pid" 2>/dev/null || true
  fi
  if [ -n "$ledgerd_pid" ] && kill -0 "$ledgerd_pid" 2>/dev/null; then
    kill -INT "$ledgerd_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$ledgerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$ledgerd_pid" 2>/dev/null || true
    wait "$ledgerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run DIR CMD...: CMD in DIR, in the background and waited for, so that INT and TERM reach the
# traps at once (bash runs a trap only after its foreground command ends); the cleanup stops CMD.
run() {
  local dir=$1; shift
  (cd "$dir" && exec "$@") &
  child_pid=$!
  local rc=0
  wait "$child_pid" || rc=$?
  child_pid=""
  return "$rc"
}

if [ -z "$bindir" ]; then
  echo "# building ledgerd and ledger-bench" >&2
  bindir="$work/bin"; mkdir -p "$bindir"
  (cd "$repo" && go build -o "$bindir" ./cmd/ledgerd ./cmd/ledger-bench)
fi
for b in ledgerd ledger-bench; do [ -x "$bindir/$b" ] || die "$bindir/$b missing"; done

avail_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)"
if [ "${avail_kb:-0}" -gt 0 ] && [ "$avail_kb" -lt $((3800 * 1024)) ]; then
  echo "# warning: $((avail_kb / 1024)) MiB available; TigerBeetle's server takes ~3.5 GB" >&2
fi

# results: one line per run: row round kind rate p99_ms rss_bytes (kind: tb or ledger)
results="$work/results"; : >"$results"
notes="$work/notes"; : >"$notes"

# free_port: a free loopback port.
. "$repo/bench/lib.sh"

# tb_run ROW ROUND ACCOUNTS BATCH
tb_run() {
  local row=$1 round=$2 accounts=$3 batch=$4 d out rate p99 rss
  d="$(mktemp -d "$work/tb.XXXXXX")"; out="$d/out"
  echo "# round $round row $row: tigerbeetle benchmark --account-count=$accounts --transfer-batch-size=$batch --transfer-count=$transfers" >&2
  if ! run "$d" "$tb" benchmark --account-count="$accounts" --transfer-batch-size="$batch" \
        --transfer-count="$transfers" --query-count=10 >"$out" 2>"$d/err"; then
    tail -20 "$d/err" >&2; die "tigerbeetle benchmark failed (round $round, row $row)"
  fi
  rate="$(sed -n 's/^load accepted = \([0-9.]*\) tx\/s.*/\1/p' "$out" | head -1)"
  p99="$(sed -n 's/^batch latency p99 = \([0-9.]*\) ms.*/\1/p' "$out" | head -1)"
  rss="$(sed -n 's/^rss = \([0-9]*\) bytes.*/\1/p' "$out" | head -1)"
  if [ -z "$rate" ] || [ -z "$p99" ]; then
    cat "$out" >&2; die "could not read TigerBeetle's output (round $round, row $row)"
  fi
  echo "#   $rate tx/s, batch p99 $p99 ms" >&2
  echo "$row $round tb $rate $p99 ${rss:-0}" >>"$results"
  rm -rf "$d"
  sync # the run's writeback lands before the next run starts, not during it
}

# jfield FILE FIELD: one top-level field of ledger-bench's JSON.
jfield() {
  if [ "$json" = jq ]; then jq -r ".$2 // empty" "$1"
  else python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
  fi
}

# ledger_run ROW ROUND ledger-bench-flags...
ledger_run() {
  local row=$1 round=$2; shift 2
  local d port mport aport nport rate p99 rss failed errs check
  d="$(mktemp -d "$work/ledger.XXXXXX")"
  port="$(free_port)"; mport="$(free_port)"; aport="$(free_port)"; nport="$(free_port)"
  echo "# round $round row $row: ledger-bench --transfers $transfers $*" >&2
  "$bindir/ledgerd" --data-dir "$d/data" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
    --admin-listen "127.0.0.1:$aport" --notify-listen "127.0.0.1:$nport" >"$d/ledgerd.log" 2>&1 &
  ledgerd_pid=$!
  wait_up "ledgerd (round $round, row $row)" "$ledgerd_pid" "$d/ledgerd.log" "http://127.0.0.1:$mport/healthz"
  if ! run "$d" "$bindir/ledger-bench" --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$mport" --quiet \
       --json "$d/result.json" --transfers "$transfers" "$@" >"$d/bench.out" 2>&1; then
    cat "$d/bench.out" >&2; tail -20 "$d/ledgerd.log" >&2; die "ledger-bench failed (round $round, row $row)"
  fi
  kill -INT "$ledgerd_pid"
  local stopped=""
  for _ in $(seq 300); do kill -0 "$ledgerd_pid" 2>/dev/null || { stopped=1; break; }; sleep 0.1; done
  if [ -z "$stopped" ]; then
    echo "# warning: ledgerd did not stop within 30 s of SIGINT; killed" >&2
    kill -KILL "$ledgerd_pid" 2>/dev/null || true
  fi
  wait "$ledgerd_pid" 2>/dev/null || true
  ledgerd_pid=""
  [ -s "$d/result.json" ] || die "ledger-bench wrote no JSON (round $round, row $row)"
  rate="$(jfield "$d/result.json" transfers_per_second)"
  p99="$(jfield "$d/result.json" latency_p99_ms)"
  rss="$(jfield "$d/result.json" server_rss_bytes)"
  failed="$(jfield "$d/result.json" transfers_failed)"
  errs="$(jfield "$d/result.json" request_errors)"
  check="$(jfield "$d/result.json" balance_check)"
  if [ -z "$rate" ] || [ -z "$p99" ]; then die "could not read ledger-bench's JSON (round $round, row $row)"; fi
  if [ "${failed:-0}" != 0 ] || [ "${errs:-0}" != 0 ] || [[ "$check" != ok* ]]; then
    echo "row $row round $round: $failed transfers failed, $errs request errors, balance check: $check" >>"$notes"
  fi
  printf '#   %.0f tx/s, request p99 %s ms, ledgerd RSS %s bytes\n' "$rate" "$p99" "${rss:-?}" >&2
  echo "$row $round ledger $rate $p99 ${rss:-0}" >>"$results"
  rm -rf "$d"
  sync
}

# One round: each selected row, TigerBeetle and ledger alternated; even rounds put the ledger first.
run_pair() { # ROW ROUND TB_ACCOUNTS TB_BATCH ledger-flags...
  local row=$1 round=$2 acc=$3 batch=$4; shift 4
  if [ $((round % 2)) -eq 1 ]; then tb_run "$row" "$round" "$acc" "$batch"; ledger_run "$row" "$round" "$@"
  else ledger_run "$row" "$round" "$@"; tb_run "$row" "$round" "$acc" "$batch"; fi
}
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(uptime)"
for round in $(seq "$rounds"); do
  # Row 2's ratio needs row 1's TigerBeetle run; row 5's needs row 1's ledger run.
  if [ -n "${want[1]:-}${want[2]:-}${want[5]:-}" ]; then
    run_pair 1 "$round" 10000 8190 --accounts 10000 --batch 8190 --concurrency 1
  fi
  [ -z "${want[2]:-}" ] || ledger_run 2 "$round" --accounts 10000 --batch 8190 --concurrency 4
  [ -z "${want[3]:-}" ] || run_pair 3 "$round" 10000 100 --accounts 10000 --batch 100 --concurrency 1
  [ -z "${want[4]:-}" ] || ledger_run 4 "$round" --accounts 10000 --batch 1 --concurrency 1024 --client-batching
  [ -z "${want[5]:-}" ] || run_pair 5 "$round" 1000000 8190 --accounts 1000000 --batch 8190 --concurrency 1
  [ -z "${want[6]:-}" ] || ledger_run 6 "$round" --accounts 10000 --batch 1 --concurrency 1024 --streams 4
done
load_after="$(uptime)"

# Sorted numbers in, "median min max" out (the mean of the middle two for an even count).
# shellcheck disable=SC2016 # awk code
median_min_max='{ v[NR] = $1 } END { if (NR) print (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2, v[1], v[NR] }'
# agg ROW KIND COLUMN: "median min max" of that column over the rounds (empty if none).
agg() {
  awk -v r="$1" -v k="$2" -v c="$3" '$1 == r && $3 == k { print $c }' "$results" | sort -g |
    awk -v OFMT=%.12g "$median_min_max"
}
# paired ROW_A KIND_A ROW_B KIND_B: "median min max" over the rounds of rate(A)/rate(B).
paired() {
  awk -v OFMT=%.12g -v ra="$1" -v ka="$2" -v rb="$3" -v kb="$4" '
    $1 == ra && $3 == ka { a[$2] = $4 }
    $1 == rb && $3 == kb { b[$2] = $4 }
    END { for (i in a) if ((i in b) && b[i] > 0) print a[i] / b[i] }' "$results" | sort -g |
    awk -v OFMT=%.12g "$median_min_max"
}
# fmt KIND "median min max": rate (thousands separators), x (ratio), pct, ms; "-" if empty,
# the median alone when min = max (one round).
fmt() {
  awk -v k="$1" -v s="$2" '
    function f(v,   r, n) {
      if (k == "x") return sprintf("%.2fx", v)
      if (k == "pct") return sprintf("%.0f%%", 100 * v)
      if (k == "ms") return sprintf("%.1f", v)
      r = sprintf("%.0f", v); n = ""
      while (length(r) > 3) { n = "," substr(r, length(r) - 2) n; r = substr(r, 1, length(r) - 3) }
      return r n
    }
    BEGIN {
      if (split(s, v, " ") < 3) { print "-"; exit }
      m = f(v[1]); lo = f(v[2]); hi = f(v[3])
      if (k == "x") { sub(/x$/, "", lo); sub(/x$/, "", hi) }
      if (lo == hi) print m; else print m " (" lo "-" hi ")"
    }'
}
gib() { awk -v b="${1:-0}" 'BEGIN { printf "%.2f", b / 1073741824 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 >= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && a + 0 < b) }'; }
yn() { if "$@"; then echo yes; else echo no; fi; }
med() { echo "${1%% *}"; }   # the median of "median min max"
top() { echo "${1##* }"; }   # the max

echo
echo "TigerBeetle vs ledgerd, alternated: \`bash bench/tbcompare.sh TIGERBEETLE --transfers $transfers --rounds $rounds --rows $(IFS=,; echo "${rowlist[*]}")\`"
echo
echo "- started: $started; finished: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- load before: ${load_before#*load average: }; after: ${load_after#*load average: } (uptime load average, 1/5/15 min; $(nproc 2>/dev/null || echo '?') cores)"
echo "- git revision: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$([ -z "$(git -C "$repo" status --porcelain 2>/dev/null)" ] || echo ' (with uncommitted changes)'); TigerBeetle: $("$tb" version 2>/dev/null | head -1 || true)"
echo "- $transfers transfers per run, $rounds round(s); median (min-max) over the rounds; ratio = ledger/TigerBeetle of each round's pair"
echo "- ledger-bench makes each caller's next request while its request is in flight (its --prepare-ahead default) in rows 1, 2, 3 and 5"
echo "- row 6's 1,024 callers are run by each stream's sender and receiver goroutines, not a goroutine each (ledger-bench --streams since session 22); row 4's are goroutines of their own"
echo
echo "| row | workload | TigerBeetle tx/s | ledger tx/s | ratio (ledger/TB) | TB batch p99 ms (whole ms) | ledger request p99 ms | ledgerd RSS GiB | target | met? |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
# both TEST1 TEST2 LABEL1 LABEL2: "yes", or "no (LABEL yes/no, ...)".
both() {
  local a b; a="$(yn eval "$1")"; b="$(yn eval "$2")"
  if [ "$a$b" = yesyes ]; then echo yes; else echo "no ($3 $a, $4 $b)"; fi
}
row_line() { # ROW WORKLOAD TB_RATE LEDGER_RATE RATIO TB_P99 LEDGER_P99 RSS TARGET MET
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@"
}
tb1="$(agg 1 tb 4)"; tbp1="$(agg 1 tb 5)"
if [ -n "${want[1]:-}" ]; then
  x="$(paired 1 ledger 1 tb)"; lp="$(agg 1 ledger 5)"
  row_line 1 "batch 8190, 1 in flight" "$(fmt rate "$tb1")" "$(fmt rate "$(agg 1 ledger 4)")" "$(fmt x "$x")" \
    "$(fmt ms "$tbp1")" "$(fmt ms "$lp")" "$(gib "$(med "$(agg 1 ledger 6)")")" "≥ 2x TB, p99 < 100 ms" \
    "$(both "ge '$(med "$x")' 2" "lt '$(med "$lp")' 100" rate p99)"
fi
if [ -n "${want[2]:-}" ]; then
  l="$(agg 2 ledger 4)"
  row_line 2 "batch 8190, 4 in flight (TB: its 1 in flight)" "$(fmt rate "$tb1")" "$(fmt rate "$l")" \
    "$(fmt x "$(paired 2 ledger 1 tb)")" "$(fmt ms "$tbp1")" "$(fmt ms "$(agg 2 ledger 5)")" \
    "$(gib "$(med "$(agg 2 ledger 6)")")" "≥ 500,000/s" "$(yn ge "$(med "$l")" 500000)"
fi
if [ -n "${want[3]:-}" ]; then
  x="$(paired 3 ledger 3 tb)"
  row_line 3 "batch 100, 1 in flight" "$(fmt rate "$(agg 3 tb 4)")" "$(fmt rate "$(agg 3 ledger 4)")" "$(fmt x "$x")" \
    "$(fmt ms "$(agg 3 tb 5)")" "$(fmt ms "$(agg 3 ledger 5)")" "$(gib "$(med "$(agg 3 ledger 6)")")" "≥ 4x TB" \
    "$(yn ge "$(med "$x")" 4)"
fi
if [ -n "${want[4]:-}" ]; then
  l="$(agg 4 ledger 4)"; lp="$(agg 4 ledger 5)"
  row_line 4 "1 transfer per call, 1,024 callers, client batching" - "$(fmt rate "$l")" - - "$(fmt ms "$lp")" \
    "$(gib "$(med "$(agg 4 ledger 6)")")" "≥ 200,000/s, p99 < 20 ms" \
    "$(both "ge '$(med "$l")' 200000" "lt '$(med "$lp")' 20" rate p99)"
fi
if [ -n "${want[5]:-}" ]; then
  own="$(paired 5 ledger 1 ledger)"; rss="$(agg 5 ledger 6)"   # RSS judged on the largest run
  row_line 5 "1,000,000 accounts, batch 8190, 1 in flight" "$(fmt rate "$(agg 5 tb 4)")" "$(fmt rate "$(agg 5 ledger 4)")" \
    "$(fmt x "$(paired 5 ledger 5 tb)"); $(fmt pct "$own") of ledger's row 1" "$(fmt ms "$(agg 5 tb 5)")" \
    "$(fmt ms "$(agg 5 ledger 5)")" "$(gib "$(med "$rss")") (max $(gib "$(top "$rss")"))" "≥ 90% of row 1, RSS < 2 GiB" \
    "$(both "ge '$(med "$own")' 0.9" "lt '$(top "$rss")' 2147483648" rate RSS)"
fi
if [ -n "${want[6]:-}" ]; then
  l="$(agg 6 ledger 4)"; lp="$(agg 6 ledger 5)"
  row_line 6 "1 transfer per request, 1,024 callers, 4 CreateTransfersStream streams" - "$(fmt rate "$l")" - - "$(fmt ms "$lp")" \
    "$(gib "$(med "$(agg 6 ledger 6)")")" "≥ 200,000/s, p99 < 20 ms" \
    "$(both "ge '$(med "$l")' 200000" "lt '$(med "$lp")' 20" rate p99)"
fi
if [ -s "$notes" ]; then
  echo
  echo "Runs with failed transfers, request errors or a failed balance check (their rates are in the table):"
  sed 's/^/- /' "$notes"
fi
