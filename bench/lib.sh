# Shell helpers shared by bench/tbcompare.sh, bench/subcost.sh and bench/paysustained.sh (sourced; they define die).

# free_port: a loopback port nothing answers on now, below the kernel's ephemeral range: a port
# in it may be the local end of a connection, which answers nothing yet cannot be listened on.
free_port() {
  local p lo=32768
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  [ "$lo" -gt 11024 ] || die "the ephemeral ports start at $lo: no room for free_port below them"
  for _ in $(seq 100); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

# wait_up NAME PID LOG URL [any]: waits (30 s at most) until URL answers 2xx (any HTTP status
# with "any") while process PID runs; otherwise dies saying which, with the end of LOG.
wait_up() {
  local name=$1 pid=$2 log=$3 url=$4 f=-f
  [ "${5:-}" = any ] && f=""
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "$name exited at start (the end of its log above)"; }
    curl -s $f -o /dev/null --max-time 1 "$url" && return
    sleep 0.1
  done
  tail -20 "$log" >&2; die "$name did not answer $url within 30 s (the end of its log above)"
}
