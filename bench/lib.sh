# Shell helpers shared by bench/tbcompare.sh and bench/subcost.sh (sourced; they define die).

# free_port: a loopback port nothing answers on now.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}
