#!/usr/bin/env bash
# Token-endpoint throughput of mock-idp against panva's oidc-provider, same run, same machine.
#
#   bench/idp.sh                      # 5 s warm-up + 20 s measured per scenario and server
#   BENCH_DURATION=60 bench/idp.sh    # longer
#
# Builds mock-idp and the load generator (mock-idp/examples/idp_loadgen.rs) in release, installs
# bench/oidc-provider's locked npm dependencies if missing, starts both servers on loopback, runs
# the `refresh` and `code` scenarios against each with the same load generator, prints a Markdown
# table with the ratios, and writes it into docs/benchmarks.md (section
# "## mock-idp: token endpoint throughput"; other sections are left alone).
#
# Environment:
#   BENCH_CONNECTIONS  concurrent connections (default 16)
#   BENCH_DURATION     measured seconds per run (default 20)
#   BENCH_WARMUP       warm-up seconds per run, discarded (default 5)
#   BENCH_THREADS      load generator runtime threads (default 1)
#   BENCH_DOC          document to update (default docs/benchmarks.md; "" to skip)
#   BENCH_ALLOW_ERRORS write the document even if a run counted errors (default 0)
#   BENCH_RESULTS      a folder to copy the raw figures into (machine-readable, for bench/all.sh)
#
# This is a benchmark, not a test: nothing here asserts a speed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CONNECTIONS="${BENCH_CONNECTIONS:-16}"
DURATION="${BENCH_DURATION:-20}"
WARMUP="${BENCH_WARMUP:-5}"
THREADS="${BENCH_THREADS:-1}"
DOC="${BENCH_DOC-docs/benchmarks.md}"
ALLOW_ERRORS="${BENCH_ALLOW_ERRORS:-0}"
COMMAND="BENCH_CONNECTIONS=$CONNECTIONS BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_THREADS=$THREADS bench/idp.sh"
SECTION="## mock-idp: token endpoint throughput"

for tool in cargo node npm; do
  command -v "$tool" >/dev/null || { echo "bench/idp.sh: $tool is required" >&2; exit 1; }
done

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (release)" >&2
cargo build --release -p mock-idp --example idp_loadgen --bin mock-idp >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
LOADGEN="$BIN/examples/idp_loadgen"

if [ ! -d bench/oidc-provider/node_modules ]; then
  echo "== npm ci (bench/oidc-provider)" >&2
  npm ci --prefix bench/oidc-provider --no-audit --no-fund >&2
fi

# Starts "$@" with stdout to $WORK/$name.out and waits for the line "$prefix http://ADDR".
# Sets $BASE to http://ADDR.
start() {
  local name="$1" prefix="$2"
  shift 2
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=("$!")
  local pid="$!"
  for _ in $(seq 1 300); do
    BASE="$(sed -n "s/^$prefix \(http:\/\/[^ ]*\)$/\1/p" "$WORK/$name.out" | head -n1)"
    if [ -n "$BASE" ]; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "bench/idp.sh: $name exited before it was ready:" >&2
      cat "$WORK/$name.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench/idp.sh: $name did not print its readiness line within 30 s" >&2
  exit 1
}

# mock-idp logs every request at info level (tracing-actix-web, JSON to stderr); oidc-provider logs
# nothing by default, so ours runs at warn.
echo "== starting mock-idp" >&2
start mock-idp "mock-idp listening on" env RUST_LOG=warn "$BIN/mock-idp" --bind 127.0.0.1:0
OURS="$BASE/acme"
OURS_PID="${PIDS[-1]}"
echo "== starting oidc-provider" >&2
start oidc-provider "oidc-provider listening on" env NODE_ENV=production node bench/oidc-provider/server.mjs 0
THEIRS="$BASE/acme"
THEIRS_PID="${PIDS[-1]}"

# CPU time (user + system, all threads) of a process, in clock ticks.
TICKS_PER_SEC="$(getconf CLK_TCK)"
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
# Interleaved, so slow drifts of the machine (other work, thermal) hit both servers alike.
for scenario in refresh code; do
  for server in mock-idp oidc-provider; do
    if [ "$server" = mock-idp ]; then
      issuer="$OURS" server_pid="$OURS_PID"
    else
      issuer="$THEIRS" server_pid="$THEIRS_PID"
    fi
    echo "== $scenario on $server ($issuer): ${WARMUP}s warm-up + ${DURATION}s" >&2
    "$LOADGEN" --issuer "$issuer" --scenario "$scenario" --connections "$CONNECTIONS" \
      --duration-secs "$DURATION" --warmup-secs "$WARMUP" --threads "$THREADS" \
      --label "$server" >"$WORK/run.json" &
    loadgen_pid="$!"
    # CPU use of both processes from the end of the warm-up (give or take the sign-ins before
    # it) to the end of the run: how much of the machine each one had.
    sleep "$WARMUP"
    s0="$(cpu_ticks "$server_pid")" l0="$(cpu_ticks "$loadgen_pid")" t0="$(date +%s.%N)"
    while kill -0 "$loadgen_pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$loadgen_pid/stat")" != Z ]; do
      s1="$(cpu_ticks "$server_pid")" l1="$(cpu_ticks "$loadgen_pid")" t1="$(date +%s.%N)"
      sleep 0.2
    done
    wait "$loadgen_pid"
    node -e '
      const [json, s0, s1, l0, l1, t0, t1, hz] = process.argv.slice(1);
      const r = JSON.parse(json);
      const secs = Number(t1) - Number(t0);
      r.server_cpu_cores = Math.round(((s1 - s0) / hz / secs) * 100) / 100;
      r.loadgen_cpu_cores = Math.round(((l1 - l0) / hz / secs) * 100) / 100;
      console.log(JSON.stringify(r));
    ' "$(cat "$WORK/run.json")" "$s0" "${s1:-$s0}" "$l0" "${l1:-$l0}" "$t0" "${t1:-$t0}" "$TICKS_PER_SEC" \
      | tee -a "$RESULTS" >&2
  done
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
export RESULTS COMMAND CPU_MODEL LOAD_START LOAD_END THREADS SECTION
export NPROC="$(nproc)" DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" KERNEL="$(uname -r)"
export NODE_VERSION="$(node --version)" RUSTC_VERSION="$(rustc --version)"
export OIDC_PROVIDER_VERSION="$(node -p "require('./bench/oidc-provider/node_modules/oidc-provider/package.json').version")"

# The section, as Markdown, on stdout.
node --input-type=module >"$WORK/section.md" <<'EOF'
import { readFileSync } from 'node:fs';

const env = process.env;
const runs = readFileSync(env.RESULTS, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const get = (server, scenario) => runs.find((r) => r.server === server && r.scenario === scenario);
const fmt = (x, d = 2) => Number(x).toFixed(d);
const names = { refresh: 'refresh_token grant', code: 'authorization_code (authorize + token)' };

const out = [];
out.push(env.SECTION, '');
out.push(
  `Measured ${env.DATE} with \`${env.COMMAND}\` on ${env.NPROC} × ${env.CPU_MODEL} `
  + `(Linux ${env.KERNEL}; ${env.RUSTC_VERSION}; Node.js ${env.NODE_VERSION}, `
  + `oidc-provider ${env.OIDC_PROVIDER_VERSION}). Load average (1/5/15 min) `
  + `${env.LOAD_START} before the runs, ${env.LOAD_END} after.`,
  '',
);
const perCore = (r) => r.rps / r.server_cpu_cores;
out.push('| scenario | server | requests/s | p50 ms | p99 ms | requests | errors | server CPU, cores | load generator CPU, cores | requests/s per server core |');
out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const scenario of ['refresh', 'code']) {
  for (const server of ['mock-idp', 'oidc-provider']) {
    const r = get(server, scenario);
    out.push(`| ${names[scenario]} | ${server} | ${fmt(r.rps, 0)} | ${fmt(r.p50_ms)} | ${fmt(r.p99_ms)} | ${r.requests} | ${r.errors} | ${fmt(r.server_cpu_cores)} | ${fmt(r.loadgen_cpu_cores)} | ${fmt(perCore(r), 0)} |`);
  }
}
out.push('');
out.push('| scenario | throughput, mock-idp ÷ oidc-provider | p99, mock-idp ÷ oidc-provider (lower is better) | throughput per server core, mock-idp ÷ oidc-provider |');
out.push('| --- | ---: | ---: | ---: |');
for (const scenario of ['refresh', 'code']) {
  const [a, b] = [get('mock-idp', scenario), get('oidc-provider', scenario)];
  out.push(`| ${names[scenario]} | ${fmt(a.rps / b.rps)}× | ${fmt(a.p99_ms / b.p99_ms)}× | ${fmt(perCore(a) / perCore(b))}× |`);
}
out.push('');
out.push(
  `${runs[0].connections} keep-alive connections, one per load-generator worker; `
  + `${runs[0].duration_secs.toFixed(0)} s measured after a warm-up whose samples are discarded; `
  + 'both servers run side by side and the runs are interleaved '
  + '(refresh on mock-idp, refresh on oidc-provider, then the code flow likewise). '
  + 'A refresh sample is one token request: each worker signs in once, then always presents the '
  + 'refresh token it received last (rotation makes each one single-use; a replay would revoke '
  + 'the chain). A code sample is a whole authorization on a signed-in session: GET the '
  + 'authorization endpoint with a fresh PKCE pair, follow the redirect to the callback, exchange '
  + 'the code (two HTTP requests on both servers). Any non-200 token response counts as an error.',
  '',
);
out.push(
  `The load generator (\`mock-idp/examples/idp_loadgen.rs\`, ${env.THREADS} runtime thread(s)) `
  + `runs on the same ${env.NPROC}-core machine and competes with the server for CPU, as do `
  + 'other processes on a shared machine (see the load average): treat the absolute figures as '
  + 'this machine\'s, and the ratio as the result. The CPU columns are the CPU time (user + '
  + 'system, all threads) each process used per second of the measured part of the run, read '
  + 'from `/proc`; node runs its JavaScript on one thread, mock-idp on two actix workers.',
  '',
);
out.push(
  'Configuration: mock-idp with its default tenants (`--bind 127.0.0.1:0`, `RUST_LOG=warn`: it '
  + 'otherwise logs every request as JSON to stderr, and oidc-provider logs nothing by default). '
  + 'oidc-provider runs `bench/oidc-provider/server.mjs` with `NODE_ENV=production`: issuer '
  + '`/acme`, public client `lanyard-cli` (native, `none` auth, PKCE S256 required, loopback '
  + 'redirect), ES256 ID tokens, JWT (RFC 9068) ES256 access tokens through a resource indicator, '
  + 'refresh-token rotation on every use, the built-in in-memory adapter, and an interaction '
  + 'route that signs alice in without HTML; its consent policy drops the '
  + '`native_client_prompt` check so a signed-in session gets a code directly, as on mock-idp. '
  + 'Differences that remain: mock-idp checks the password with Argon2 at each worker\'s first '
  + 'sign-in (set-up, not measured); oidc-provider leaves `offline_access` out of the access '
  + 'token\'s `scope` and `at_hash`, `auth_time`, `sid` and `azp` out of the ID token, and its '
  + 'built-in adapter keeps at most 1000 entries (LRU) where mock-idp keeps every record until '
  + 'it expires.',
  '',
);
out.push(
  'Where mock-idp spends its time on a refresh (profiled with `perf` on this machine, '
  + '2026-11-26): ES256 signing is still the largest part, about 35 % of the server\'s CPU for '
  + 'the two JWTs of each response (access token and ID token). It signs with `ring` (about '
  + '18 µs a signature here, against 55 µs for RustCrypto `p256` 0.14 and 140 µs for 0.13), and '
  + 'outside the tenant\'s grants lock: rotation and reuse detection are decided under the lock, '
  + 'the tokens signed after it, so both actix workers sign at once. Next come the grants\' hash '
  + 'maps, about 10 % (every token record is kept until it expires, so they keep growing and '
  + 'rehashing during a run), and the HTTP stack and the kernel\'s socket work, most of the rest. '
  + 'Request logging is not the limit: at the default `RUST_LOG=info`, with stderr to /dev/null, '
  + 'a refresh run was about 5 % slower than at `warn` (measured before the signing changes).',
  '',
);
process.stdout.write(out.join('\n'));
EOF

echo
cat "$WORK/section.md"
echo

if [ -n "${BENCH_RESULTS:-}" ]; then
  mkdir -p "$BENCH_RESULTS"
  cp "$RESULTS" "$BENCH_RESULTS/runs.jsonl"
  cp "$WORK/section.md" "$BENCH_RESULTS/section.md"
fi

TOTAL_ERRORS="$(node -e "
  const rs = require('fs').readFileSync(process.argv[1], 'utf8').trim().split('\n').map(JSON.parse);
  console.log(rs.reduce((n, r) => n + r.errors, 0));" "$RESULTS")"

if [ "$TOTAL_ERRORS" != 0 ] && [ "$ALLOW_ERRORS" != 1 ]; then
  echo "bench/idp.sh: $TOTAL_ERRORS errors counted; not writing ${DOC:-the document} (BENCH_ALLOW_ERRORS=1 to write anyway)" >&2
  exit 1
fi

if [ -n "$DOC" ]; then
  export DOC SECTION_FILE="$WORK/section.md"
  node --input-type=module <<'EOF'
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const { DOC, SECTION, SECTION_FILE } = process.env;
const section = readFileSync(SECTION_FILE, 'utf8').trimEnd() + '\n';
let doc = existsSync(DOC) ? readFileSync(DOC, 'utf8') : '# Lanyard benchmarks\n';
const lines = doc.split('\n');
const start = lines.findIndex((l) => l.trimEnd() === SECTION);
if (start === -1) {
  doc = doc.trimEnd() + '\n\n' + section;
} else {
  let end = lines.findIndex((l, i) => i > start && /^#{1,2} /.test(l));
  if (end === -1) end = lines.length;
  const before = lines.slice(0, start).join('\n').trimEnd();
  const after = lines.slice(end).join('\n').trim();
  doc = before + '\n\n' + section + (after ? '\n' + after + '\n' : '');
}
mkdirSync(dirname(DOC), { recursive: true });
writeFileSync(DOC, doc);
EOF
  echo "bench/idp.sh: wrote the section into $DOC" >&2
fi
