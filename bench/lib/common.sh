# Shared by the bench/*.sh scripts (sourced, not run).

# "2 × Intel(R) Xeon(R) Processor (Linux 6.x; rustc 1.x)": what the figures were measured on.
machine_line() {
  local cpu
  cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  printf '%s × %s (Linux %s; %s)' "$(nproc)" "$cpu" "$(uname -r)" "$(rustc --version)"
}

load_average() {
  cut -d' ' -f1-3 /proc/loadavg
}

now_utc() {
  date -u '+%Y-%m-%d %H:%M UTC'
}

# bench_start NAME PREFIX CMD...: starts CMD with stdout to $WORK/NAME.out, stderr to
# $WORK/NAME.err, and waits (30 s at most) for a stdout line "PREFIX http://ADDR". Sets BASE to
# http://ADDR and appends the pid to PIDS. Needs WORK and PIDS.
bench_start() {
  local name="$1" prefix="$2"
  shift 2
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid="$!"
  PIDS+=("$pid")
  for _ in $(seq 1 300); do
    BASE="$(sed -n "s/^$prefix \(http:\/\/[^ ]*\)$/\1/p" "$WORK/$name.out" | head -n1)"
    if [ -n "$BASE" ]; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before it was ready:" >&2
      cat "$WORK/$name.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not print its readiness line within 30 s" >&2
  exit 1
}

# The readiness line of a second service started by the same command (devstack prints two).
bench_wait_line() {
  local name="$1" prefix="$2"
  for _ in $(seq 1 300); do
    BASE="$(sed -n "s/^$prefix \(http:\/\/[^ ]*\)$/\1/p" "$WORK/$name.out" | head -n1)"
    if [ -n "$BASE" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not print '$prefix' within 30 s" >&2
  exit 1
}

bench_stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
