#!/usr/bin/env bash
# The targets of bench/RESULTS.md: each workload three times (a fresh embedded ledger each
# run), median and spread. Run from the repository root: bash bench/targets.sh
set -euo pipefail
go build -o /tmp/ledger-bench ./cmd/ledger-bench
b() { echo "== ledger-bench $*"; /tmp/ledger-bench --quiet --repeat 3 "$@" | grep -E '^(median|mode|workload)' ; }
b --transfers 2000000                                               # uniform, 1 shard (default)
b --transfers 2000000 --distribution hot --hot-accounts 1 --hot-percent 90
b --transfers 2000000 --concurrency 1                               # latency-bound
b --transfers 2000000 --concurrency 2
b --transfers 200000 --batch 1 --concurrency 1024                   # one transfer per RPC
b --transfers 1000000 --batch 1 --concurrency 1024 --client-batching
b --transfers 2000000 --pending
b --transfers 2000000 --accounts 1000000
b --transfers 2000000 --shards 2
b --transfers 2000000 --shards 2 --distribution hot --hot-accounts 1 --hot-percent 90
b --transfers 2000000 --shards 2 --distribution hot --hot-accounts 1 --hot-percent 90 --hot-flagged=false
b --transfers 2000000 --in-process
