#!/usr/bin/env bash
# Session registry on Postgres with 1,000,000 sessions: authenticate (by session token and by
# session JWT) and list throughput against pgbench's point-select ceiling on the same server,
# and revoke-to-SSE delivery latency.
#
#   bench/registry.sh                     # 5 s warm-up + 20 s measured per run
#   BENCH_DURATION=60 bench/registry.sh   # longer
#
# Builds session-registry, mock-idp and the helpers (session-registry/examples/bench_sessions.rs,
# session-registry/examples/revoke_latency.rs) in release; (re)creates the databases
# lanyard_bench and lanyard_pgbench on the local Postgres; starts mock-idp and
# `session-registry --migrate` on loopback with tenant acme trusting the IdP; seeds 100,000
# accounts, 1,000,000 devices and 1,000,000 sessions with SQL; opens 16 real sessions for alice
# through the API (each on its own device); then, in one run:
#
#   pgbench -S -c 16 -j 2 -T DURATION (on lanyard_pgbench, `pgbench -i -s 10`: 1,000,000 rows)
#   POST /v1/sessions/authenticate by session token, 16 connections (wrk)
#   POST /v1/sessions/authenticate by session JWT (alice's 16 sessions), 16 connections (wrk)
#   GET /v1/sessions (list by account: alice's 16 sessions), 16 connections (wrk)
#   revoke-to-SSE delivery: 100 subscribers on /v1/events, 20 revokes (revoke_latency)
#
# Authenticate by token spreads over 10,000 of the seeded sessions, picked at random per request
# (bench/lib/wrk-requests.lua, one JSON body per line): their tokens are made in the registry's format
# (`lyst_acme_…` with its CRC-32 check, see session-registry/src/token.rs) and their SHA-256
# hashes stored, so each request resolves a random session among 1,000,000 as real clients would;
# a single token hammered from 16 connections would instead time row-lock contention on one row.
# Prints Markdown tables with the ratios to pgbench and writes them into docs/benchmarks.md,
# section "## session-registry" (other sections are left alone).
#
# Environment:
#   BENCH_DURATION     measured seconds per run (default 20)
#   BENCH_WARMUP       warm-up seconds per HTTP run, discarded (default 5)
#   BENCH_CONNECTIONS  connections (default 16)
#   BENCH_PG           libpq connection options (default "host=127.0.0.1 port=5432 user=postgres")
#   BENCH_SESSIONS     seeded sessions (default 1000000)
#   BENCH_LOADGEN      wrk (default) or oha: the HTTP load generator. wrk (C, like pgbench) costs
#                      a few µs of CPU per request; oha (Rust, tokio + hyper) costs ~35 µs, which
#                      on 2 shared cores is CPU the registry does not get.
#   BENCH_PERF         1: also `perf record` the registry during each HTTP run (default 0;
#                      the profiles are kept in BENCH_RESULTS when it is set)
#   BENCH_TRACE        1: also sample the machine every second (CPU split, pressure stalls, disk
#                      writes, dirty memory, what Postgres's backends wait on) and time one
#                      authenticate every 20 ms beside the load, to place stalls in time; kept in
#                      BENCH_RESULTS as system.tsv and canary.tsv (default 0). For finding a
#                      stall, not for the report: the canary adds 50 requests/s, and a sampler
#                      that started a psql process every second moved the token p99 at 16
#                      connections from ~1.3 to 2.6-5.3 ms (2026-12-04)
#   BENCH_BASELINE_BIN another session-registry binary (e.g. an older build) to also run the two
#                      authenticate workloads against, on the same database, after the others
#   BENCH_BASELINE_LABEL  how the tables name that binary (default "baseline")
#   BENCH_BASELINE_NOTE   what that binary is, for the sentence under the tables (optional)
#   BENCH_DOC          document to update (default docs/benchmarks.md; "" to skip)
#   BENCH_EVENTS       the registry's --events: postgres (default) or nats://HOST:PORT
#   BENCH_PROCESSES    registry processes (default 1). With more (needs BENCH_EVENTS=nats://…),
#                      every process shares one key-encryption key and one public URL, HAProxy
#                      (`apt-get install haproxy`) balances them round-robin, the authenticate
#                      runs go once to the first process alone and once through HAProxy, and
#                      the SSE subscribers are spread over the processes; the figures go to the
#                      section "## session-registry, N processes"
#   BENCH_SUBSCRIBERS  SSE subscribers of the revoke → delivery run (default 100); with
#                      BENCH_PROCESSES > 1, also the resident memory per idle subscriber
#   BENCH_REVOKES      revokes of that run (default 20)
#   BENCH_WORKLOADS    what to run (default "pgbench prepared token jwt list revoke"; add
#                      "lookup" for the registry's token-hash statement run by pgbench on the
#                      sessions table). With fewer than the default six, no section is written:
#                      bench/all.sh's sessions curve runs "pgbench token jwt lookup" per point
#   BENCH_REPEATS      how many times to run the token and JWT workloads (default 1; each run
#                      prepared as the first): bench/all.sh's curve takes the median per size;
#                      in the full run, `pgbench -S` runs again beside each token repeat and the
#                      token ratio's verdict is the median of the pairs (pairs.jsonl)
#   BENCH_REFERENCE_SESSIONS  N: also a second database (lanyard_bench_ref) of N sessions, seeded
#                      the same way, with a registry of its own, and beside every token and JWT run
#                      (each repeat too) the same run against it, back to back, the order swapped
#                      from one repeat to the next (ref-token, ref-jwt-r2, …; reference.jsonl:
#                      each run's p99 over its reference's). bench/all.sh's sessions curve sets it
#                      to its smallest size: p99 at 10 M against p99 at 10 k measured the same
#                      minute, not 20 minutes apart on a machine whose tails move from minute to
#                      minute (one JWT run's p99 moved between 0.43 and 3.75 ms at every size on
#                      a path that reads no table, 2026-12-05). Both registry processes are
#                      stopped and started again before each repeat, the main one first in
#                      repeats 1, 2 and 5 and the reference first in 3 and 4 (BENCH_REFERENCE_RESTARTS=0:
#                      each started once): over 15 JWT pairs of one report the process started
#                      first had the higher p99 in 10 (median 1.77 x), on a path that reads no
#                      table. After each restart, a short token run (settle-token, settle-ref-token
#                      …) is recorded and kept out of the verdicts: six of seven token runs that
#                      stalled were the first run measured on a freshly started process
#   BENCH_PACED_DELAY_MS  D (wrk only): after each token and JWT run (and reference run), the same
#                      workload at a fixed offered load below saturation, each connection pausing
#                      D ms after each answer (token-paced, jwt-paced-r2, ref-token-paced …;
#                      BENCH_PACED_DURATION seconds, default 10, after a 1 s warm-up). At
#                      saturation a p99 measures the queue of the 2 shared cores as much as the
#                      registry; below it, what one request costs at each size
#   BENCH_SWEEP        connection counts (e.g. "1 4 16 64"): after the other runs, `pgbench -S`
#                      and authenticate by token at each (BENCH_SWEEP_WORKLOADS adds "jwt")
#   BENCH_RESULTS      a folder to write the raw figures into, machine-readable (meta.json,
#                      runs.jsonl, pgbench.json, lookup.json, revoke.json, sweep.jsonl and the
#                      latency distributions NAME.hist.csv: `latency_us,count`), for
#                      bench/all.sh and bench/plot; also each registry's /metrics at the end
#                      (metrics-N.txt) and its log (session-registry-N.err)
#   BENCH_OFFCPU       1: trace every spell over 150 ms a registry thread spends off the CPU
#                      (bench/lib/offcpu.bt, bpftrace, root), kept in BENCH_RESULTS as offcpu.txt
#   BENCH_REGISTRY_LOG the registries' RUST_LOG (default warn; e.g. warn,async_nats=debug)
#
# Needs psql, pgbench, wrk (`apt-get install wrk`) or oha (`cargo install oha`), jq, python3. This is a benchmark, not a test:
# nothing here asserts a speed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. bench/lib/common.sh

DURATION="${BENCH_DURATION:-20}"
WARMUP="${BENCH_WARMUP:-5}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
PG="${BENCH_PG:-host=127.0.0.1 port=5432 user=postgres}"
# The registry's own connections to Postgres are plain TCP (sqlx and tokio-postgres, no TLS on
# loopback), and so are the anchor's: libpq's default (sslmode=prefer) negotiates TLS with a
# server that offers it, as Debian's does, and until 2026-12-04 every `pgbench -S` here ran over
# TLS 1.3, which cost it about a quarter of its rate (same database, 15 s each: 14,700 and
# 15,800 tps with TLS, 19,700 and 20,000 without). Every ratio to `pgbench -S` before that date
# flattered the registry by as much.
export PGSSLMODE="${PGSSLMODE:-disable}"
if [ "$PGSSLMODE" = disable ]; then
  PG_TLS_NOTE="without TLS (\`PGSSLMODE=disable\`; the registry's connections are plain too)"
else
  PG_TLS_NOTE="with libpq's \`PGSSLMODE=$PGSSLMODE\` (the registry's connections are plain TCP; \`sslmode\` in \`BENCH_PG\` overrides both)"
fi
SESSIONS="${BENCH_SESSIONS:-1000000}"
PERF="${BENCH_PERF:-0}"
LOADGEN="${BENCH_LOADGEN:-wrk}"
BASELINE_BIN="${BENCH_BASELINE_BIN:-}"
BASELINE_LABEL="${BENCH_BASELINE_LABEL:-baseline}"
DOC="${BENCH_DOC-docs/benchmarks.md}"
EVENTS="${BENCH_EVENTS:-postgres}"
PROCESSES="${BENCH_PROCESSES:-1}"
SUBSCRIBERS="${BENCH_SUBSCRIBERS:-100}"
REVOKES="${BENCH_REVOKES:-20}"
SECTION="## session-registry"
COMMAND="BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_CONNECTIONS=$CONNECTIONS BENCH_LOADGEN=$LOADGEN BENCH_PERF=$PERF BENCH_EVENTS=$EVENTS"
if [ "$PROCESSES" != 1 ]; then
  case "$EVENTS" in
    nats://*) ;;
    *) echo "bench/registry.sh: BENCH_PROCESSES > 1 needs BENCH_EVENTS=nats://HOST:PORT" >&2; exit 1 ;;
  esac
  SECTION="## session-registry, $PROCESSES processes"
  COMMAND="$COMMAND BENCH_PROCESSES=$PROCESSES"
fi
if [ "$SUBSCRIBERS" != 100 ] || [ "$REVOKES" != 20 ]; then
  COMMAND="$COMMAND BENCH_SUBSCRIBERS=$SUBSCRIBERS BENCH_REVOKES=$REVOKES"
fi
if [ -n "${BENCH_BASELINE_BIN:-}" ]; then
  COMMAND="$COMMAND BENCH_BASELINE_BIN=${BENCH_BASELINE_BIN} BENCH_BASELINE_LABEL=\"${BENCH_BASELINE_LABEL:-baseline}\""
fi
if [ "$PGSSLMODE" != disable ]; then COMMAND="PGSSLMODE=$PGSSLMODE $COMMAND"; fi
COMMAND="$COMMAND bench/registry.sh"
RESULTS_DIR="${BENCH_RESULTS:-}"
DEFAULT_WORKLOADS="pgbench prepared token jwt list revoke"
WORKLOADS="${BENCH_WORKLOADS:-$DEFAULT_WORKLOADS}"
SWEEP="${BENCH_SWEEP:-}"
SWEEP_WORKLOADS="${BENCH_SWEEP_WORKLOADS:-token}"
has() { case " $WORKLOADS " in *" $1 "*) return 0 ;; esac; return 1; }
# Every workload of the section's tables: only then is the section made.
FULL=1
for w in $DEFAULT_WORKLOADS; do has "$w" || FULL=0; done
if [ "$SESSIONS" != 1000000 ]; then
  COMMAND="BENCH_SESSIONS=$SESSIONS $COMMAND"
fi
if [ "$WORKLOADS" != "$DEFAULT_WORKLOADS" ]; then
  COMMAND="BENCH_WORKLOADS=\"$WORKLOADS\" $COMMAND"
fi
if [ -n "$SWEEP" ]; then
  COMMAND="BENCH_SWEEP=\"$SWEEP\" $COMMAND"
fi
if [ "${BENCH_REPEATS:-1}" != 1 ]; then
  COMMAND="BENCH_REPEATS=$BENCH_REPEATS $COMMAND"
fi
DB=lanyard_bench
PGBENCH_DB=lanyard_pgbench
REFERENCE="${BENCH_REFERENCE_SESSIONS:-}"
REF_DB=lanyard_bench_ref
RESTARTS=0
[ -z "$REFERENCE" ] || RESTARTS="${BENCH_REFERENCE_RESTARTS:-1}"
PACED="${BENCH_PACED_DELAY_MS:-}"
PACED_SECS="${BENCH_PACED_DURATION:-10}"
if [ -n "$PACED" ]; then
  COMMAND="BENCH_PACED_DELAY_MS=$PACED $COMMAND"
  [ "$PACED_SECS" = 10 ] || COMMAND="BENCH_PACED_DURATION=$PACED_SECS $COMMAND"
fi
if [ -n "$REFERENCE" ]; then
  [ "$PROCESSES" = 1 ] || { echo "bench/registry.sh: BENCH_REFERENCE_SESSIONS needs BENCH_PROCESSES=1" >&2; exit 1; }
  COMMAND="BENCH_REFERENCE_SESSIONS=$REFERENCE $COMMAND"
  [ "$RESTARTS" = 1 ] || COMMAND="BENCH_REFERENCE_RESTARTS=$RESTARTS $COMMAND"
fi

case "$LOADGEN" in
  wrk | oha) ;;
  *) echo "bench/registry.sh: BENCH_LOADGEN must be wrk or oha" >&2; exit 1 ;;
esac
if [ -n "$PACED" ]; then
  [ "$LOADGEN" = wrk ] || { echo "bench/registry.sh: BENCH_PACED_DELAY_MS needs BENCH_LOADGEN=wrk (its delay() hook)" >&2; exit 1; }
  [[ "$PACED" =~ ^[1-9][0-9]*$ ]] || { echo "bench/registry.sh: BENCH_PACED_DELAY_MS must be a whole number of ms, 1 or more" >&2; exit 1; }
fi
# The trace tools follow the processes started first; a restart would leave them on dead pids.
if [ "$RESTARTS" = 1 ] && { [ "${BENCH_TRACE:-0}" = 1 ] || [ "${BENCH_OFFCPU:-0}" = 1 ]; }; then
  echo "bench/registry.sh: BENCH_TRACE and BENCH_OFFCPU need BENCH_REFERENCE_RESTARTS=0 beside a reference" >&2
  exit 1
fi
TOOLS=(cargo psql pgbench "$LOADGEN" jq python3 curl)
[ "$PROCESSES" = 1 ] || TOOLS+=(haproxy)
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || { echo "bench/registry.sh: $tool is required" >&2; exit 1; }
done

# The registries' log filter (BENCH_REGISTRY_LOG, default warn; e.g. warn,async_nats=debug).
REGISTRY_LOG="${BENCH_REGISTRY_LOG:-warn}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  # Each registry's counters as the run left them (event-stream database reads, batching).
  if [ -n "${BENCH_RESULTS:-}" ] && [ -n "${REGISTRY_URLS[*]:-}" ]; then
    mkdir -p "$BENCH_RESULTS"
    for n in "${!REGISTRY_URLS[@]}"; do
      curl -fsS --max-time 5 "${REGISTRY_URLS[$n]}/metrics" >"$BENCH_RESULTS/metrics-$((n + 1)).txt" 2>/dev/null || true
    done
  fi
  bench_stop_all
  # The registries' own logs (RUST_LOG=warn: slow pool acquires, stalls) stay with the figures.
  if [ -n "${BENCH_RESULTS:-}" ]; then
    mkdir -p "$BENCH_RESULTS"
    cp "$WORK"/session-registry-*.err "$BENCH_RESULTS"/ 2>/dev/null || true
  fi
  if [ -n "${TRACE_PIDS[*]:-}" ]; then
    kill "${TRACE_PIDS[@]}" 2>/dev/null || true
    wait "${TRACE_PIDS[@]}" 2>/dev/null || true
    if [ -n "${BENCH_RESULTS:-}" ]; then cp "$WORK"/system.tsv "$WORK"/canary.tsv "$WORK"/offcpu.txt "$BENCH_RESULTS"/ 2>/dev/null || true; fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (release)" >&2
cargo build --release -p session-registry -p mock-idp --bin session-registry --bin mock-idp \
  --example bench_sessions --example revoke_latency >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

psql_admin() {
  psql "$PG dbname=postgres" -v ON_ERROR_STOP=1 -qAt "$@"
}

echo "== databases $DB, $PGBENCH_DB" >&2
for db in "$DB" "$PGBENCH_DB"; do
  psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
done
psql_admin -c "DROP DATABASE IF EXISTS $REF_DB WITH (FORCE)"
[ -z "$REFERENCE" ] || psql_admin -c "CREATE DATABASE $REF_DB"
PG_VERSION="$(psql_admin -c 'SHOW server_version')"
PG_SETTINGS="$(psql_admin -c "SELECT string_agg(name || '=' || setting || COALESCE(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections', 'wal_level')")"

echo "== pgbench -i -s 10 $PGBENCH_DB" >&2
pgbench "$PG dbname=$PGBENCH_DB" -i -s 10 -q >&2 2>&1

# libpq keywords → a URL for sqlx.
DATABASE_URL="$(python3 - "$PG" "$DB" <<'EOF'
import sys, urllib.parse
kv = dict(p.split("=", 1) for p in sys.argv[1].split())
user = urllib.parse.quote(kv.get("user", "postgres"))
pw = ":" + urllib.parse.quote(kv["password"]) if "password" in kv else ""
print(f"postgres://{user}{pw}@{kv.get('host', '127.0.0.1')}:{kv.get('port', '5432')}/{sys.argv[2]}")
EOF
)"

echo "== starting mock-idp and session-registry" >&2
bench_start mock-idp "mock-idp listening on" env RUST_LOG=warn "$BIN/mock-idp" --bind 127.0.0.1:0
IDP="$BASE"
ISSUER="$IDP/acme"
cat >"$WORK/registry.toml" <<EOF
key_dir = "$WORK/keys"

[[tenants]]
slug = "acme"
issuer = "$ISSUER"
audiences = ["lanyard-cli"]
EOF
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Many processes: one key-encryption key (shared signing keys) and one public URL (the balancer's:
# the `iss` of every process's session JWTs).
SHARED=()
if [ "$PROCESSES" != 1 ]; then
  LB_PORT="$(free_port)"
  LB="http://127.0.0.1:$LB_PORT"
  SHARED=(--key-encryption-key "$(head -c32 /dev/urandom | base64)" --public-url "$LB")
  # 10,000 streams' sockets in one client process: the soft limit up to the hard one.
  ulimit -n "$(ulimit -Hn)"
fi
# start_registry NAME DATABASE_URL CONFIG DEPLOYMENT [ARGS...]: one session-registry process, its
# output in $WORK/NAME.out and .err; BASE is its URL and PIDS[-1] its pid.
start_registry() {
  local name="$1" url="$2" config="$3" deployment="$4"
  shift 4
  bench_start "$name" "session-registry listening on" env RUST_LOG="$REGISTRY_LOG" \
    "$BIN/session-registry" --bind 127.0.0.1:0 --database-url "$url" --config "$config" \
    --events "$EVENTS" --deployment "$deployment" "$@"
}
REGISTRY_URLS=()
REGISTRY_PIDS=()
for n in $(seq 1 "$PROCESSES"); do
  MIGRATE=()
  [ "$n" = 1 ] && MIGRATE=(--migrate)
  start_registry "session-registry-$n" "$DATABASE_URL" "$WORK/registry.toml" "bench$$" "${MIGRATE[@]}" "${SHARED[@]}"
  REGISTRY_URLS+=("$BASE")
  REGISTRY_PIDS+=("${PIDS[-1]}")
done
REGISTRY="${REGISTRY_URLS[0]}"
REGISTRY_PID="${REGISTRY_PIDS[0]}"
if [ "$PROCESSES" != 1 ]; then
  {
    echo "global"
    echo "  maxconn 4000"
    echo "defaults"
    echo "  mode http"
    echo "  timeout connect 5s"
    echo "  timeout client 1h"
    echo "  timeout server 1h"
    echo "  timeout tunnel 1h"
    echo "frontend registry"
    echo "  bind 127.0.0.1:$LB_PORT"
    echo "  maxconn 4000"
    echo "  default_backend registries"
    echo "backend registries"
    echo "  balance roundrobin"
    for n in "${!REGISTRY_URLS[@]}"; do
      echo "  server r$n ${REGISTRY_URLS[$n]#http://} maxconn 1000"
    done
  } >"$WORK/haproxy.cfg"
  haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.out" 2>&1 &
  PIDS+=("$!")
  HAPROXY_PID="$!"
  for _ in $(seq 1 100); do
    curl -fsS "$LB/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "$LB/healthz" >/dev/null || { echo "bench/registry.sh: HAProxy does not answer at $LB" >&2; cat "$WORK/haproxy.out" >&2; exit 1; }
  HAPROXY_VERSION="$(haproxy -v | head -n1 | awk '{ print $3 }')"
  echo "   HAProxy $HAPROXY_VERSION at $LB round-robin over ${REGISTRY_URLS[*]}" >&2
fi

echo "== seeding $SESSIONS sessions" >&2
# Real tokens for 10,000 of them, spread over the table: session n = 1 + 100 i.
TOKENS_SEEDED=10000
python3 bench/lib/session_tokens.py "$TOKENS_SEEDED" 1 "$((SESSIONS / TOKENS_SEEDED > 0 ? SESSIONS / TOKENS_SEEDED : 1))" \
  "$WORK/seed-tokens.txt" "$WORK/seed-tokens.csv"
jq -Rc '{session_token: .}' "$WORK/seed-tokens.txt" >"$WORK/token-bodies.txt"
# seed_sessions DBNAME SESSIONS TOKENS_CSV: SESSIONS sessions (10 per account, each on its own
# device) into DBNAME, those named in TOKENS_CSV (`n,sha256-hex`) with real tokens' hashes.
seed_sessions() {
  sed "s|SEED_TOKENS_CSV|$3|" <<'EOF' | psql "$PG dbname=$1" -v ON_ERROR_STOP=1 -q \
    -v issuer="$ISSUER" -v now="$(date +%s)" -v sessions="$2" -v accounts="$(($2 / 10 > 0 ? $2 / 10 : 1))" >&2
-- As the superuser (row-level security does not apply); foreign-key triggers off for the bulk
-- load: every row below references rows inserted just before it.
SET session_replication_role = replica;
SET maintenance_work_mem = '1GB';
CREATE TEMP TABLE seed_tokens (n BIGINT PRIMARY KEY, hash TEXT NOT NULL);
\copy seed_tokens FROM 'SEED_TOKENS_CSV' WITH (FORMAT csv)
BEGIN;
-- Loaded as Postgres's manual advises (Populating a Database): the indexes of devices and
-- sessions (no table references either) dropped, the rows inserted, and the indexes built again
-- from their saved definitions. Inserting 10 M sessions into six indexes in random order took
-- 24 minutes (1,437 s, 2026-12-03), nearly all of it in the index inserts.
CREATE TEMP TABLE seed_indexes ON COMMIT DROP AS
SELECT i.indrelid::regclass::text AS tbl, c.conname AS constraint_name,
       i.indexrelid::regclass::text AS index_name,
       COALESCE(pg_get_constraintdef(c.oid), pg_get_indexdef(i.indexrelid)) AS def
FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u')
WHERE i.indrelid IN ('devices'::regclass, 'sessions'::regclass);
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM seed_indexes LOOP
    IF r.constraint_name IS NOT NULL THEN
      EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.constraint_name);
    ELSE
      EXECUTE format('DROP INDEX %s', r.index_name);
    END IF;
  END LOOP;
END $$;
INSERT INTO accounts (id, tenant, issuer, subject, email, is_guest, created_at)
SELECT md5('account-' || g), 'acme', :'issuer', 'seed-' || g, 'seed-' || g || '@acme.example', false, :now
FROM generate_series(1, :accounts) g;
INSERT INTO devices (tenant, account_id, id, name, platform, first_seen, last_seen)
SELECT 'acme', md5('account-' || (g % :accounts + 1)), 'seed-device-' || g, 'seed device ' || g, 'linux', :now, :now
FROM generate_series(1, :sessions) g;
INSERT INTO sessions (id, tenant, account_id, device_id, token_hash, idp_sid, created_at,
                      last_authenticated_at, expires_at, absolute_expires_at, auth_method, user_agent, ip,
                      subject, email, is_guest, device_name, device_platform, auth_time)
SELECT md5('session-' || g), 'acme', md5('account-' || (g % :accounts + 1)), 'seed-device-' || g,
       -- a real token's hash where one was made, else the hash of a token nobody holds
       COALESCE(t.hash, encode(sha256(convert_to('seed-token-' || g, 'UTF8')), 'hex')),
       -- last active an hour ago: each session's first authenticate records its activity (in
       -- the warm-up), as a steady heartbeat does once a minute
       md5('sid-' || g), :now, :now - 3600, :now + 2592000, :now + 2592000, 'oidc', 'lanyard/0.1', '127.0.0.1',
       'seed-' || (g % :accounts + 1), 'seed-' || (g % :accounts + 1) || '@acme.example', false,
       'seed device ' || g, 'linux', :now
FROM generate_series(1, :sessions) g LEFT JOIN seed_tokens t ON t.n = g;
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM seed_indexes LOOP
    IF r.constraint_name IS NOT NULL THEN
      EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.tbl, r.constraint_name, r.def);
    ELSE
      EXECUTE r.def;
    END IF;
  END LOOP;
END $$;
COMMIT;
SET session_replication_role = origin;
VACUUM ANALYZE accounts, devices, sessions;
-- The seed's dirty pages written out now, not by a checkpoint during the measured runs.
CHECKPOINT;
EOF
}
SEED_START="$(date +%s.%N)"
ACCOUNTS_SEEDED=$((SESSIONS / 10))
seed_sessions "$DB" "$SESSIONS" "$WORK/seed-tokens.csv"
SEED_SECS="$(python3 -c "import time; print(round(time.time() - $SEED_START))")"
ROWS="$(psql "$PG dbname=$DB" -qAt -c 'SELECT count(*) FROM sessions')"
echo "   $ROWS sessions in $DB (${SEED_SECS}s)" >&2

# check_seeded_token URL BODIES: one seeded token must authenticate, or the token run would time
# refusals.
check_seeded_token() {
  local status
  status="$(head -n1 "$2" | curl -sS -o "$WORK/check.json" -w '%{http_code}' \
    -H "Content-Type: application/json" --data-binary @- "$1/v1/sessions/authenticate")"
  if [ "$status" != 200 ]; then
    echo "bench/registry.sh: a seeded token was refused by $1 ($status):" >&2
    cat "$WORK/check.json" >&2
    exit 1
  fi
}
check_seeded_token "$REGISTRY" "$WORK/token-bodies.txt"

# BENCH_REFERENCE_SESSIONS: the reference database, seeded the same way, and its own registry
# (its own signing keys; the same IdP and tenant).
if [ -n "$REFERENCE" ]; then
  echo "== reference: $REFERENCE sessions in $REF_DB, served by a registry of its own" >&2
  sed "s|$WORK/keys|$WORK/ref-keys|" "$WORK/registry.toml" >"$WORK/registry-ref.toml"
  start_registry session-registry-ref "${DATABASE_URL%/*}/$REF_DB" "$WORK/registry-ref.toml" "benchref$$" --migrate
  REF_REGISTRY="$BASE" REF_PID="${PIDS[-1]}"
  REF_TOKENS=$((REFERENCE < TOKENS_SEEDED ? REFERENCE : TOKENS_SEEDED))
  python3 bench/lib/session_tokens.py "$REF_TOKENS" 1 "$((REFERENCE / REF_TOKENS))" \
    "$WORK/ref-seed-tokens.txt" "$WORK/ref-seed-tokens.csv"
  jq -Rc '{session_token: .}' "$WORK/ref-seed-tokens.txt" >"$WORK/ref-token-bodies.txt"
  seed_sessions "$REF_DB" "$REFERENCE" "$WORK/ref-seed-tokens.csv"
  check_seeded_token "$REF_REGISTRY" "$WORK/ref-token-bodies.txt"
fi

# BENCH_TRACE=1: the machine second by second (bench/lib/sampler.py) and a timed request every
# 20 ms beside the load (bench/lib/canary.py), kept in BENCH_RESULTS as system.tsv and canary.tsv.
TRACE_PIDS=()
if [ "${BENCH_TRACE:-0}" = 1 ]; then
  python3 bench/lib/sampler.py "$WORK" "$PG" "$DB" "${REGISTRY_PIDS[@]}" &
  TRACE_PIDS+=("$!")
  python3 bench/lib/canary.py "$WORK/canary.tsv" "$REGISTRY" /v1/sessions/authenticate "$WORK/token-bodies.txt" &
  TRACE_PIDS+=("$!")
fi
# BENCH_OFFCPU=1: every spell over 150 ms a registry thread spent off the CPU, with its state and
# kernel stack (bench/lib/offcpu.bt; needs bpftrace and root), kept in BENCH_RESULTS as offcpu.txt.
if [ "${BENCH_OFFCPU:-0}" = 1 ]; then
  # The scheduler's tracepoints live in tracefs, which a fresh container may not have mounted.
  [ -d /sys/kernel/tracing/events/sched ] || mount -t tracefs nodev /sys/kernel/tracing || true
  OFFCPU_PIDS=("${REGISTRY_PIDS[@]}" "${REGISTRY_PIDS[0]}" "${REGISTRY_PIDS[0]}")
  bpftrace bench/lib/offcpu.bt "${OFFCPU_PIDS[@]:0:3}" >"$WORK/offcpu.txt" 2>&1 &
  TRACE_PIDS+=("$!")
fi

echo "== $CONNECTIONS sessions for alice through the API" >&2
"$BIN/examples/bench_sessions" --issuer "$ISSUER" --registry "$REGISTRY" --user alice \
  --count "$CONNECTIONS" --device-prefix bench >"$WORK/sessions.jsonl"
mapfile -t TOKENS < <(jq -r .session_token "$WORK/sessions.jsonl")
[ "${#TOKENS[@]}" = "$CONNECTIONS" ] || { echo "expected $CONNECTIONS sessions" >&2; exit 1; }
printf '%s\n' "${TOKENS[@]}" >"$WORK/alice-tokens.txt"
if [ -n "$REFERENCE" ]; then
  "$BIN/examples/bench_sessions" --issuer "$ISSUER" --registry "$REF_REGISTRY" --user alice \
    --count "$CONNECTIONS" --device-prefix bench | jq -r .session_token >"$WORK/ref-alice-tokens.txt"
  [ "$(wc -l <"$WORK/ref-alice-tokens.txt")" = "$CONNECTIONS" ] || { echo "expected $CONNECTIONS reference sessions" >&2; exit 1; }
fi
LISTED="$(curl -fsS -H "Authorization: Bearer ${TOKENS[0]}" "$REGISTRY/v1/sessions" | jq '.sessions | length')"

TICKS_PER_SEC="$(getconf CLK_TCK)"
# CPU ticks (user + system) of the processes named.
cpu_ticks() { local pid total=0; for pid in "$@"; do total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done; echo "$total"; }
# Busy and total jiffies of the whole machine.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# load_run NAME SECONDS METHOD PATH BODIES BEARER: one load generator process, CONNECTIONS
# keep-alive connections; each request sends a random line of the file BODIES (if not empty) as
# its JSON body and BEARER (if not empty) as its bearer credential. JSON summary in
# $WORK/NAME.json; the CPU time the generator used (user + system, seconds) in $WORK/NAME.cpu.
load_run() {
  local name="$1" secs="$2" method="$3" path="$4" bodies="$5" bearer="$6" TIMEFORMAT='%U %S'
  if [ "$LOADGEN" = wrk ]; then
    { time WRK_METHOD="$method" WRK_PATH="$path" WRK_BODIES="$bodies" WRK_BEARER="$bearer" \
      WRK_OUT="$WORK/$name.json" WRK_HIST="$WORK/$name.hist.csv" WRK_DELAY_MS="${PACE_MS:-}" \
      wrk -t "$((CONNECTIONS < 2 ? CONNECTIONS : 2))" -c "$CONNECTIONS" -d "${secs}s" \
      -s "$ROOT/bench/lib/wrk-requests.lua" "$REGISTRY" >"$WORK/$name.wrk-out" 2>&1; } 2>"$WORK/$name.cpu"
  else
    local args=(-m "$method")
    [ -n "$bodies" ] && args+=(-H "Content-Type: application/json" -Z "$bodies")
    [ -n "$bearer" ] && args+=(-H "Authorization: Bearer $bearer")
    { time oha --no-tui --output-format json -z "${secs}s" -c "$CONNECTIONS" "${args[@]}" \
      "$REGISTRY$path" >"$WORK/$name.json" 2>"$WORK/$name.oha-err"; } 2>"$WORK/$name.cpu"
  fi
}

# CPU ticks of the Postgres backends serving the registry's database (its pool's connections).
pg_ticks() {
  local total=0 pid
  for pid in $(psql "$PG dbname=postgres" -qAt -c \
    "SELECT pid FROM pg_stat_activity WHERE datname = '$DB' AND backend_type = 'client backend'"); do
    if [ -r "/proc/$pid/stat" ]; then
      total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    fi
  done
  echo "$total"
}

# What the whole Postgres server wrote (every database, its background processes too): WAL bytes,
# full-page images in it, checkpoints begun, and buffers written out by the checkpointer, the
# background writer and backends. Taken around each measured run, so a run that shares its
# seconds with the write-out of earlier writes (a checkpoint, dirty pages evicted) shows it.
# WAL is read from the WAL position itself: pg_stat_wal's counters are flushed by each backend
# when it goes idle, up to 10 s later, and so showed a first pass's WAL (30 MB at 1 M sessions)
# in the token run after it, whose 20 s read nothing from the database (2026-12-04: no backend
# but the walwriter, checkpointer and bgwriter active, sampled every 0.2 s). The full-page-image
# count has no such source and may lag the same way.
pg_writes() {
  psql "$PG dbname=postgres" -qAt -F ' ' -c \
    "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req, b.buffers_checkpoint + b.buffers_clean + b.buffers_backend FROM pg_stat_wal w, pg_stat_bgwriter b"
}

# http_run NAME METHOD PATH BODIES BEARER: warm-up, then the measured run with CPU accounting.
http_run() {
  local name="$1" method="$2" path="$3" bodies="$4" bearer="$5"
  echo "== $name: ${WARMUP}s warm-up + ${DURATION}s, $CONNECTIONS connections${PACE_MS:+, each pausing ${PACE_MS} ms after an answer}" >&2
  load_run "$name-warmup" "$WARMUP" "$method" "$path" "$bodies" "$bearer"
  # A step between the warm-up and the measured seconds (the JWT runs mint fresh JWTs there).
  if [ -n "${BEFORE_MEASURE:-}" ]; then $BEFORE_MEASURE; fi
  local r0 m0 r1 m1 t0 t1 perf_pid=""
  if [ "$PERF" = 1 ]; then
    perf record -F 999 -g -p "$REGISTRY_PID" -o "$WORK/perf-$name.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  local p0 p1 w0 w1
  curl -fsS "$REGISTRY/metrics" >"$WORK/$name.metrics-before" 2>/dev/null || true
  w0="$(pg_writes)"
  # The registry processes this run loads: the first alone, or all of them behind HAProxy
  # (HAProxy's own CPU counts with them).
  local measured=("$REGISTRY_PID")
  [ "$REGISTRY" = "${LB:-}" ] && measured=("${REGISTRY_PIDS[@]}" "$HAPROXY_PID")
  p0="$(pg_ticks)" r0="$(cpu_ticks "${measured[@]}")" m0="$(machine_ticks)" t0="$(date +%s.%N)"
  load_run "$name" "$DURATION" "$method" "$path" "$bodies" "$bearer"
  r1="$(cpu_ticks "${measured[@]}")" m1="$(machine_ticks)" t1="$(date +%s.%N)" p1="$(pg_ticks)"
  w1="$(pg_writes)"
  curl -fsS "$REGISTRY/metrics" >"$WORK/$name.metrics-after" 2>/dev/null || true
  if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; fi
  python3 - "$WORK/$name.json" "$r0" "$r1" "$m0" "$m1" "$t0" "$t1" "$TICKS_PER_SEC" "$name" \
    "$p0" "$p1" "$(cat "$WORK/$name.cpu")" "$w0" "$w1" >>"$RESULTS" <<'EOF'
import json, sys

path, r0, r1, m0, m1, t0, t1, hz, name, p0, p1, loadgen_cpu, w0, w1 = sys.argv[1:]
o = json.load(open(path, encoding="utf-8"))
if o.get("loadgen") == "wrk":
    # wrk counts answers of status >= 400 and socket errors apart from the completed requests.
    errors = o["status_errors"] + o["socket_errors"]
    ok = o["requests"] - o["status_errors"]
    total = o["duration_us"] / 1e6
    p50, p99 = o["p50_us"] / 1000, o["p99_us"] / 1000
    codes, aborted = {}, 0
else:
    codes = {str(k): v for k, v in o.get("statusCodeDistribution", {}).items()}
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    errors = sum(v for k, v in codes.items() if not k.startswith("2"))
    # Connection errors count; requests cut off by the deadline are not the server's.
    aborted = 0
    for k, v in o.get("errorDistribution", {}).items():
        if "deadline" in k:
            aborted += v
        else:
            errors += v
    total = o["summary"]["total"]
    p50, p99 = o["latencyPercentiles"]["p50"] * 1000, o["latencyPercentiles"]["p99"] * 1000
secs = float(t1) - float(t0)
(b0, a0), (b1, a1) = (map(int, m0.split()), map(int, m1.split()))
print(json.dumps({
    "name": name,
    "rps": ok / total,
    "p50_ms": p50,
    "p99_ms": p99,
    "requests": ok,
    "errors": errors,
    "aborted": aborted,
    "codes": codes,
    "registry_cpu": round((int(r1) - int(r0)) / int(hz) / secs, 2),
    "postgres_cpu": round((int(p1) - int(p0)) / int(hz) / secs, 2),
    "loadgen_cpu": round(sum(map(float, loadgen_cpu.split())) / secs, 2),
    "machine_busy": round(100 * (b1 - b0) / max(1, a1 - a0)),
    # The Postgres server's writes during the measured seconds (pg_writes).
    "pg_writes": dict(zip(
        ("wal_mb", "full_page_images", "checkpoints", "buffers_written"),
        (round((b - a) / 2**20, 1) if i == 0 else int(b - a)
         for i, (a, b) in enumerate(zip(map(float, w0.split()), map(float, w1.split())))),
    )),
}))
EOF
  tail -n1 "$RESULTS" >&2
}

if [ "$LOADGEN" = wrk ]; then
  LOADGEN_VERSION="$(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }' || true)"
  LOADGEN_SHAPE="2 threads"
else
  LOADGEN_VERSION="oha $(oha --version | awk '{ print $2 }')"
  LOADGEN_SHAPE="tokio"
fi
LOAD_START="$(load_average)"

# pgbench_run NAME DBNAME CONNECTIONS ARGS...: pgbench for DURATION s, one transaction in ten
# logged (--sampling-rate 0.1: its p50/p99 and latency distribution, $WORK/NAME.hist.csv);
# output in $WORK/NAME.txt, latency JSON in $WORK/NAME.latency.json.
pgbench_run() {
  local name="$1" dbname="$2" c="$3"
  shift 3
  rm -f "$WORK/$name-log".*
  pgbench "$PG dbname=$dbname" -n -c "$c" -j "$((c < 2 ? c : 2))" -T "$DURATION" \
    -l --sampling-rate 0.1 --log-prefix "$WORK/$name-log" "$@" >"$WORK/$name.txt" 2>&1
  cat "$WORK/$name.txt" >&2
  # Each client's mean time per transaction, for wrk's correction for coordinated omission
  # (bench/lib/pgbench_log.py): the "corrected" figures compare with wrk's.
  local interval
  interval="$(awk -v c="$c" -v tps="$(pgbench_tps "$name")" 'BEGIN { if (tps > 0) printf "%d", c * 1000000 / tps; else print 1 }')"
  python3 bench/lib/pgbench_log.py --expected-interval-us "$interval" "$WORK/$name.hist.csv" "$WORK/$name-log".* >"$WORK/$name.latency.json"
  rm -f "$WORK/$name-log".*
}
pgbench_tps() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/$1.txt" | head -n1; }

if has pgbench; then
  echo "== pgbench -S -c $CONNECTIONS -j 2 -T $DURATION" >&2
  m0="$(machine_ticks)"
  pgbench_run pgbench "$PGBENCH_DB" "$CONNECTIONS" -S
  m1="$(machine_ticks)"
  PGBENCH_TPS="$(pgbench_tps pgbench)"
  PGBENCH_LAT="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$WORK/pgbench.txt")"
  PGBENCH_TX="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.txt")"
  PGBENCH_BUSY="$(python3 -c "b0, a0 = map(int, '$m0'.split()); b1, a1 = map(int, '$m1'.split()); print(round(100 * (b1 - b0) / max(1, a1 - a0)))")"
  PGBENCH_P50="$(jq .p50_ms "$WORK/pgbench.latency.json")"
  PGBENCH_P99="$(jq .p99_ms "$WORK/pgbench.latency.json")"
  PGBENCH_P99_CORRECTED="$(jq .corrected.p99_ms "$WORK/pgbench.latency.json")"
fi

if has prepared; then
  echo "== pgbench -S -M prepared -c $CONNECTIONS -j 2 -T $DURATION" >&2
  pgbench "$PG dbname=$PGBENCH_DB" -S -n -M prepared -c "$CONNECTIONS" -j 2 -T "$DURATION" >"$WORK/pgbench-prepared.txt" 2>&1
  cat "$WORK/pgbench-prepared.txt" >&2
  PGBENCH_PREPARED_TPS="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/pgbench-prepared.txt" | head -n1)"
fi

if has lookup; then
  # What a token lookup costs Postgres at this table size, without the registry: the registry's
  # statement (session-registry/src/store/pg_hot.rs) for the hash of a random seeded session's
  # token (the seeding stores SHA-256('seed-token-' || n) for the sessions without a real token).
  echo "== lookup: the token-hash statement on $DB, pgbench -c $CONNECTIONS -T $DURATION" >&2
  cat >"$WORK/lookup.sql" <<EOF
\set g random(1, $SESSIONS)
SELECT id, account_id, expires_at FROM sessions WHERE tenant = 'acme' AND token_hash = ANY(ARRAY[encode(sha256(convert_to('seed-token-' || :g, 'UTF8')), 'hex')]);
EOF
  pgbench_run lookup "$DB" "$CONNECTIONS" -f "$WORK/lookup.sql"
fi

# first_pass URL...: every token once through each URL, 16 connections (bench/lib/first_pass.py),
# before a token run. Each seeded session's first authenticate on a process reads the database
# and, a minute after the last, waits for its activity write; a random warm-up of a few seconds
# left hundreds of them unseen, so the measured seconds held first authenticates in a number that
# depended on how fast the warm-up went (and on the table's size), and a run a minute after the
# previous one met every token's re-check again. Prints the last pass's figures (one JSON line:
# the first-authenticate rate).
FIRST_PASS_AT=0
first_pass() {
  local url out="" w0 w1
  FIRST_PASS_AT="$(date +%s)"
  w0="$(pg_writes)"
  for url in "$@"; do
    echo "== first pass: every token once through $url, 16 connections" >&2
    out="$(python3 bench/lib/first_pass.py "$url" /v1/sessions/authenticate "${FIRST_PASS_BODIES:-$WORK/token-bodies.txt}" 16)"
    echo "   $out" >&2
  done
  w1="$(pg_writes)"
  # Those writes flushed now, as the seed's are, so that their write-out does not fall in the
  # measured seconds: at 1 M sessions a first pass logs about 120 MB of WAL (each page's first
  # change after a checkpoint is logged whole), and in the token run after one a COMMIT took
  # 1.25 s (sqlx's slow-statement warning, 2026-12-03).
  psql "$PG dbname=postgres" -qAt -c CHECKPOINT >/dev/null
  # What the Postgres server wrote meanwhile: the activity writes' WAL and full-page images.
  out="$(jq -c --arg w0 "$w0" --arg w1 "$w1" '. + {pg_writes: ([$w0, $w1] | map(split(" ") | map(tonumber)) |
    {wal_mb: (((.[1][0] - .[0][0]) / 1048576 * 10 | round) / 10), full_page_images: (.[1][1] - .[0][1])})}' <<<"$out")"
  echo "   Postgres meanwhile: $(jq -c .pg_writes <<<"$out")" >&2
  echo "$out"
}

# mint_jwts URL [TOKENS_FILE] [OUT]: session JWTs of the sessions of TOKENS_FILE (default alice's
# on the main registry) minted now through URL (lat = now), into OUT (default jwt-bodies.txt). The JWT path answers from the signature and the pushed revocation set without
# the database while lat is under a minute old (JWT_RECHECK), so every JWT run mints its own
# before its warm-up and again before its measured seconds (BEFORE_MEASURE): JWTs minted once for
# all runs were over a minute old by the later ones (the 3-process and sweep runs), which then
# measured the database re-check on every request.
mint_jwts() {
  local url="$1" tokens="${2:-$WORK/alice-tokens.txt}" out="${3:-$WORK/jwt-bodies.txt}" t
  while read -r t; do
    curl -fsS -H "Content-Type: application/json" -d "{\"session_token\":\"$t\"}" \
      "$url/v1/sessions/authenticate" | jq -c '{session_jwt}'
  done <"$tokens" >"$out"
}

# restart_pair REP (BENCH_REFERENCE_SESSIONS, BENCH_REFERENCE_RESTARTS=1): both registry processes
# stopped, then started again on their databases, the main one first in repeats 1, 2 and 5 and the
# reference first in 3 and 4, so that neither database is always served by the process started
# first (with the run order, which swaps every repeat, the five repeats hold all four
# combinations). Written to starts.tsv: the repeat and which process started first.
restart_pair() {
  local rep="$1" side order pid live=()
  kill "$REGISTRY_PID" "$REF_PID" 2>/dev/null || true
  wait "$REGISTRY_PID" "$REF_PID" 2>/dev/null || true
  # Out of PIDS, so that the cleanup does not signal a pid the system may have given to another.
  for pid in "${PIDS[@]}"; do
    if [ "$pid" != "$REGISTRY_PID" ] && [ "$pid" != "$REF_PID" ]; then live+=("$pid"); fi
  done
  PIDS=("${live[@]}")
  if [ $(((rep + 1) / 2 % 2)) = 1 ]; then order="main reference"; else order="reference main"; fi
  echo "== repeat $rep: both registries started again, $order" >&2
  for side in $order; do
    if [ "$side" = main ]; then
      start_registry "session-registry-1-r$rep" "$DATABASE_URL" "$WORK/registry.toml" "bench$$"
      REGISTRY="$BASE" REGISTRY_PID="${PIDS[-1]}"
      REGISTRY_URLS[0]="$BASE" REGISTRY_PIDS[0]="${PIDS[-1]}"
    else
      start_registry "session-registry-ref-r$rep" "${DATABASE_URL%/*}/$REF_DB" "$WORK/registry-ref.toml" "benchref$$"
      REF_REGISTRY="$BASE" REF_PID="${PIDS[-1]}"
    fi
  done
  printf '%s\t%s\n' "$rep" "${order%% *}" >>"$WORK/starts.tsv"
}

# settle NAME BODIES: after a restart, a short token run against the fresh process, recorded as
# settle-NAME and kept out of every verdict: it is the first run the process serves, which is
# where the token stalls were seen, so the measured run is not.
settle() {
  [ "$RESTARTS" = 1 ] || return 0
  WARMUP=1 DURATION=5 http_run "settle-$1" POST /v1/sessions/authenticate "$2" ""
}

# paced NAME BODIES KIND (BENCH_PACED_DELAY_MS; KIND token or jwt): the run just made, again at a fixed offered load below
# saturation, named NAME (token-paced, jwt-paced-r2, …). BEFORE_MEASURE carries over (the JWT
# runs mint fresh JWTs before the measured seconds).
paced() {
  [ -n "$PACED" ] || return 0
  # A token run must end before the activity writes of its first pass come due again (60 s, by
  # whole seconds): where the paced run would not, its tokens get a first pass of their own.
  if [ "$3" = token ] && [ $(($(date +%s) - FIRST_PASS_AT + PACED_SECS + 4)) -ge 58 ]; then
    echo "   $1: too late after the first pass; a new one first" >&2
    wait_for_activity_due
    FIRST_PASS_BODIES="$2" first_pass "$REGISTRY" >/dev/null
  fi
  PACE_MS="$PACED" WARMUP=1 DURATION="$PACED_SECS" http_run "$1" POST /v1/sessions/authenticate "$2" ""
}

# ref_run KIND SUFFIX (BENCH_REFERENCE_SESSIONS): the reference registry's run of KIND (token or
# jwt), prepared as the main one's is, named ref-KIND-SUFFIX (and its paced run ref-KIND-paced-SUFFIX).
ref_run() {
  local kind="$1" suffix="$2" main=("$REGISTRY" "$REGISTRY_PID" "$DB") mint
  REGISTRY="$REF_REGISTRY" REGISTRY_PID="$REF_PID" DB="$REF_DB"
  if [ "$kind" = token ]; then
    FIRST_PASS_BODIES="$WORK/ref-token-bodies.txt" first_pass "$REGISTRY" >/dev/null
    settle "ref-token$suffix" "$WORK/ref-token-bodies.txt"
    http_run "ref-token$suffix" POST /v1/sessions/authenticate "$WORK/ref-token-bodies.txt" ""
    paced "ref-token-paced$suffix" "$WORK/ref-token-bodies.txt" token
  else
    mint="mint_jwts $REGISTRY $WORK/ref-alice-tokens.txt $WORK/ref-jwt-bodies.txt"
    $mint
    BEFORE_MEASURE="$mint" http_run "ref-jwt$suffix" POST /v1/sessions/authenticate "$WORK/ref-jwt-bodies.txt" ""
    BEFORE_MEASURE="$mint" paced "ref-jwt-paced$suffix" "$WORK/ref-jwt-bodies.txt" jwt
  fi
  REGISTRY="${main[0]}" REGISTRY_PID="${main[1]}" DB="${main[2]}"
}

TOKEN_BATCHING=""
FIRST_PASS=""
# Both processes started again after both seeds (the main one ran through its database's seed).
if [ "$RESTARTS" = 1 ]; then restart_pair 1; fi
if has token; then
FIRST_PASS_AT="$(date +%s)"  # (first_pass runs in a subshell here)
FIRST_PASS="$(first_pass "$REGISTRY")"
echo "$FIRST_PASS" >"$WORK/first-pass.json"
settle token "$WORK/token-bodies.txt"
http_run token POST /v1/sessions/authenticate "$WORK/token-bodies.txt" ""
# How the measured run's token lookups were batched, from the registry's /metrics.
TOKEN_BATCHING="$(python3 - "$WORK/token.metrics-before" "$WORK/token.metrics-after" "$WORK/token.batching.json" <<'EOF'
import json
import sys

NAMES = ("lanyard_registry_token_lookups_total", "lanyard_registry_token_lookup_statements_total")


CACHE = "lanyard_registry_session_cache_total"
SLOW = 'lanyard_registry_http_request_duration_seconds_bucket{route="/v1/sessions/authenticate",le="0.025"}'
ALL = 'lanyard_registry_http_request_duration_seconds_count{route="/v1/sessions/authenticate"}'


def counters(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        name, _, value = line.strip().rpartition(" ")
        if name in NAMES or name in (SLOW, ALL) or name.startswith(CACHE + "{"):
            out[name] = float(value)
    return out


before, after = counters(sys.argv[1]), counters(sys.argv[2])
lookups, statements = (after.get(n, 0) - before.get(n, 0) for n in NAMES)
cache = {
    n[len(CACHE) + len('{outcome="'):-2]: after[n] - before.get(n, 0)
    for n in after
    if n.startswith(CACHE + "{")
}
if len(sys.argv) > 3:
    # Machine-readable, for bench/all.sh: how many of the run's tokens went to the database.
    with open(sys.argv[3], "w", encoding="utf-8") as f:
        json.dump({"db_lookups": lookups, "statements": statements, "session_cache": cache}, f)
looks = sum(cache.values())
outcomes = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(cache.items(), key=lambda kv: -kv[1]) if v)
print(
    f"{lookups:,.0f} token lookups in {statements:,.0f} statements, "
    f"{lookups / max(statements, 1):.2f} lookups per statement on average; "
    f"session cache: {looks:,.0f} looks ({outcomes or 'none'}); "
    f"answered in over 25 ms by the registry's own clock: "
    f"{(after.get(ALL, 0) - before.get(ALL, 0)) - (after.get(SLOW, 0) - before.get(SLOW, 0)):,.0f}"
)
EOF
)"
echo "   $TOKEN_BATCHING" >&2
paced token-paced "$WORK/token-bodies.txt" token
if [ -n "$REFERENCE" ]; then ref_run token ""; fi
fi

if has jwt; then

mint_jwts "$REGISTRY"
BEFORE_MEASURE="mint_jwts $REGISTRY" http_run jwt POST /v1/sessions/authenticate "$WORK/jwt-bodies.txt" ""
BEFORE_MEASURE="mint_jwts $REGISTRY" paced jwt-paced "$WORK/jwt-bodies.txt" jwt
if [ -n "$REFERENCE" ]; then ref_run jwt ""; fi
fi

# Sleeps until every token's activity write is due again (61 s after the last first pass), so
# that the next first pass makes them all and the measured seconds after it none (see below).
wait_for_activity_due() {
  local wait_secs=$((FIRST_PASS_AT + 61 - $(date +%s)))
  if [ "$wait_secs" -gt 0 ]; then sleep "$wait_secs"; fi
}

# BENCH_REPEATS N (default 1): the token and JWT runs N times in all (token-r2 …, jwt-r2 …),
# each prepared as the first (a first pass over every token; fresh JWTs), so that bench/all.sh's
# sessions curve can take the median p99 per size: one run's p99 on two shared cores moves by
# more than the 20 % the curve's target allows (the JWT path, which reads no table, moved
# 2.76 → 10.48 → 4.09 → 8.64 ms over four sizes in single runs).
# Each repeat's first pass starts over a minute after the previous one: a session's activity
# is written (durably, before the answer) at most once a minute (TOUCH_INTERVAL), so the first
# pass then writes every token's activity, as the first run's did. Sooner, and every one of the
# 10,000 tokens came due again inside the measured seconds — a burst of synchronized activity
# writes no real fleet makes, which the first try of the repeats measured (token p99 428 and
# 540 ms of 10 k sessions, against 1.8 ms in the run whose first pass did the writes).
# In the full run (every default workload), each repeat runs `pgbench -S` again just before its token
# run (pgbench-r2 …), and the token ratio is taken pair by pair, each token run over the pgbench run
# beside it, with the median of the pairs as the verdict: on shared cores the anchor moves from
# run to run as much as we do (pgbench -S 55,288 then 49,197 tps on one machine an hour apart,
# 2026-12-04), so a ratio against one pgbench run measured minutes away says less than the pairs.
REPEATS="${BENCH_REPEATS:-1}"
pair() {  # pair TOKEN_RUN PGBENCH_NAME: one line of pairs.jsonl
  jq -c --arg pg "$(pgbench_tps "$2")" --arg run "$1" \
    'select(.name == $run) | {token: .name, token_rps: .rps, pgbench_tps: ($pg | tonumber), ratio: (.rps / ($pg | tonumber))}' \
    "$RESULTS" >>"$WORK/pairs.jsonl"
}
# Only the full run (every default workload) writes the verdicts the pairs are for; the sessions
# curve (bench/all.sh) repeats without them.
if [ "$FULL" = 1 ]; then pair token pgbench; fi
for ((rep = 2; rep <= REPEATS; rep++)); do
  if [ "$RESTARTS" = 1 ]; then restart_pair "$rep"; fi
  if has token; then
    wait_for_activity_due
    # The reference's run first in even repeats, after the main one in odd ones.
    if [ -n "$REFERENCE" ] && [ $((rep % 2)) = 0 ]; then ref_run token "-r$rep"; fi
    if [ "$FULL" = 1 ]; then
      echo "== pgbench-r$rep: pgbench -S -c $CONNECTIONS -j 2 -T $DURATION, beside token-r$rep" >&2
      pgbench_run "pgbench-r$rep" "$PGBENCH_DB" "$CONNECTIONS" -S
    fi
    first_pass "$REGISTRY" >/dev/null
    settle "token-r$rep" "$WORK/token-bodies.txt"
    http_run "token-r$rep" POST /v1/sessions/authenticate "$WORK/token-bodies.txt" ""
    if [ "$FULL" = 1 ]; then pair "token-r$rep" "pgbench-r$rep"; fi
    paced "token-paced-r$rep" "$WORK/token-bodies.txt" token
    if [ -n "$REFERENCE" ] && [ $((rep % 2)) = 1 ]; then ref_run token "-r$rep"; fi
  fi
  if has jwt; then
    if [ -n "$REFERENCE" ] && [ $((rep % 2)) = 0 ]; then ref_run jwt "-r$rep"; fi
    mint_jwts "$REGISTRY"
    BEFORE_MEASURE="mint_jwts $REGISTRY" http_run "jwt-r$rep" POST /v1/sessions/authenticate "$WORK/jwt-bodies.txt" ""
    BEFORE_MEASURE="mint_jwts $REGISTRY" paced "jwt-paced-r$rep" "$WORK/jwt-bodies.txt" jwt
    if [ -n "$REFERENCE" ] && [ $((rep % 2)) = 1 ]; then ref_run jwt "-r$rep"; fi
  fi
done

if [ -n "$REFERENCE" ]; then
  # Each run beside its reference run: p99 here ÷ p99 at REFERENCE sessions, the same minute.
  touch "$WORK/starts.tsv"
  python3 - "$RESULTS" "$REFERENCE" "$SESSIONS" "$WORK/starts.tsv" >"$WORK/reference.jsonl" <<'PY'
import json
import re
import sys

runs = {r["name"]: r for r in map(json.loads, open(sys.argv[1], encoding="utf-8"))}
order = list(runs)  # in the order they ran
# Which process each repeat started first (restart_pair); none when they were started once.
starts = dict(line.split() for line in open(sys.argv[4], encoding="utf-8") if line.strip())
for kind in ("token", "jwt", "token-paced", "jwt-paced"):
    for name, r in runs.items():
        m = re.fullmatch(rf"{kind}(?:-r(\d+))?", name)
        ref = runs.get("ref-" + name)
        # A reference run with no answers has no p99 to divide by: its pair is left out.
        if m and ref and ref["p99_ms"] > 0:
            rep = int(m.group(1) or 1)
            print(json.dumps({
                "series": kind, "run": rep, "sessions": int(sys.argv[3]),
                "reference_sessions": int(sys.argv[2]),
                "first": "reference" if order.index("ref-" + name) < order.index(name) else "main",
                "started_first": starts.get(str(rep), ""),
                "rps": r["rps"], "reference_rps": ref["rps"],
                "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "reference_p50_ms": ref["p50_ms"],
                "reference_p99_ms": ref["p99_ms"], "ratio": r["p99_ms"] / ref["p99_ms"],
            }))
PY
  for kind in token jwt token-paced jwt-paced; do
    echo "   $kind p99 at $SESSIONS ÷ p99 at $REFERENCE, run by run: $(jq -r --arg k "$kind" 'select(.series == $k) | "\(.p99_ms * 100 | round / 100) ÷ \(.reference_p99_ms * 100 | round / 100) = \(.ratio * 100 | round / 100)"' "$WORK/reference.jsonl" | paste -sd ';' | sed 's/;/; /g')" >&2
  done
fi

if [ -s "$WORK/pairs.jsonl" ] && [ "$(wc -l <"$WORK/pairs.jsonl")" -gt 1 ]; then
  echo "   token ÷ pgbench -S, pair by pair: $(jq -r '.ratio * 100 | round / 100' "$WORK/pairs.jsonl" | paste -sd ' ');" \
    "median $(jq -s 'map(.ratio) | sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end | . * 100 | round / 100' "$WORK/pairs.jsonl")" >&2
fi

if has list; then
  http_run list GET /v1/sessions "" "${TOKENS[0]}"
fi

if [ "$PROCESSES" != 1 ]; then
  # The same two authenticate workloads through HAProxy, round-robin over every process.
  MAIN_REGISTRY="$REGISTRY"
  REGISTRY="$LB"
  # Every process's own session cache: a pass through each process, not through HAProxy.
  first_pass "${REGISTRY_URLS[@]}" >/dev/null
  http_run token-lb POST /v1/sessions/authenticate "$WORK/token-bodies.txt" ""
  if has jwt; then
    mint_jwts "$LB"
    BEFORE_MEASURE="mint_jwts $LB" http_run jwt-lb POST /v1/sessions/authenticate "$WORK/jwt-bodies.txt" ""
  fi
  REGISTRY="$MAIN_REGISTRY"
fi

if [ -n "$BASELINE_BIN" ]; then
  echo "== baseline registry: $BASELINE_BIN ($BASELINE_LABEL)" >&2
  bench_start session-registry-baseline "session-registry listening on" env RUST_LOG=warn \
    "$BASELINE_BIN" --bind 127.0.0.1:0 --database-url "$DATABASE_URL" --config "$WORK/registry.toml"
  MAIN_REGISTRY="$REGISTRY" MAIN_REGISTRY_PID="$REGISTRY_PID"
  REGISTRY="$BASE" REGISTRY_PID="${PIDS[-1]}"
  first_pass "$REGISTRY" >/dev/null
  http_run token-baseline POST /v1/sessions/authenticate "$WORK/token-bodies.txt" ""
  # Its own session JWTs: `iss` is each registry's own URL.
  mint_jwts "$REGISTRY"
  BEFORE_MEASURE="mint_jwts $REGISTRY" http_run jwt-baseline POST /v1/sessions/authenticate "$WORK/jwt-bodies.txt" ""
  kill "$REGISTRY_PID" 2>/dev/null || true
  REGISTRY="$MAIN_REGISTRY" REGISTRY_PID="$MAIN_REGISTRY_PID"
fi

if [ -n "$SWEEP" ]; then
  # Throughput against connections: pgbench -S and the authenticate runs at each count.
  : >"$WORK/sweep.jsonl"
  MAIN_CONNECTIONS="$CONNECTIONS"
  for c in $SWEEP; do
    echo "== sweep: $c connections" >&2
    pgbench_run "sweep-pgbench-$c" "$PGBENCH_DB" "$c" -S
    jq -c --arg tps "$(pgbench_tps "sweep-pgbench-$c")" --argjson c "$c" \
      '{workload: "pgbench -S", connections: $c, rps: ($tps | tonumber), p50_ms, p99_ms, p99_corrected_ms: .corrected.p99_ms, errors: 0}' \
      "$WORK/sweep-pgbench-$c.latency.json" >>"$WORK/sweep.jsonl"
    CONNECTIONS="$c"
    for w in $SWEEP_WORKLOADS; do
      bodies="$WORK/token-bodies.txt"
      if [ "$w" = jwt ]; then
        mint_jwts "$REGISTRY"
        bodies="$WORK/jwt-bodies.txt"
      else
        # As for the repeats: a pass sooner than a minute after the last one left every token's
        # activity write to come due inside the measured seconds (2026-12-04, 1 M sessions: the
        # 4-connection point logged 127 MB of WAL in its 20 s, p99 83 ms).
        wait_for_activity_due
        first_pass "$REGISTRY" >/dev/null
      fi
      BEFORE_MEASURE="$([ "$w" = jwt ] && echo "mint_jwts $REGISTRY")" http_run "sweep-$w-$c" POST /v1/sessions/authenticate "$bodies" ""
      tail -n1 "$RESULTS" | jq -c --arg w "$w" --argjson c "$c" \
        '{workload: $w, connections: $c, rps, p50_ms, p99_ms, errors}' >>"$WORK/sweep.jsonl"
    done
    CONNECTIONS="$MAIN_CONNECTIONS"
  done
fi

SUBSCRIBER_TOKENS=()
if has revoke && [ "$SUBSCRIBERS" -gt 100 ]; then
  # A sign-in per subscriber (the IdP's login form, a password hash each) would take longer than
  # everything else here: bob signs in once, and his other subscriber sessions are seeded with SQL
  # as copies of that session, each with a real token of its own and a device of its own.
  echo "== seeding $SUBSCRIBERS sessions of bob for the subscribers" >&2
  "$BIN/examples/bench_sessions" --issuer "$ISSUER" --registry "$REGISTRY" --user bob \
    --count 1 --device-prefix bob-seed >"$WORK/bob.jsonl"
  BOB_SESSION="$(jq -r .session_id "$WORK/bob.jsonl")"
  python3 bench/lib/session_tokens.py "$SUBSCRIBERS" 0 1 "$WORK/subscriber-tokens.txt" "$WORK/subscriber-hashes.csv"
  sed "s|HASHES_CSV|$WORK/subscriber-hashes.csv|" <<'EOF' | psql "$PG dbname=$DB" -v ON_ERROR_STOP=1 -q -v bob="$BOB_SESSION" >&2
SET session_replication_role = replica;
CREATE TEMP TABLE sub_hashes (n BIGINT PRIMARY KEY, hash TEXT NOT NULL);
\copy sub_hashes FROM 'HASHES_CSV' WITH (FORMAT csv)
BEGIN;
INSERT INTO devices (tenant, account_id, id, name, platform, first_seen, last_seen)
SELECT s.tenant, s.account_id, 'sub-' || h.n, 'subscriber ' || h.n, 'linux', s.created_at, s.created_at
FROM sub_hashes h CROSS JOIN sessions s WHERE s.id = :'bob';
INSERT INTO sessions (id, tenant, account_id, device_id, token_hash, idp_sid, created_at,
                      last_authenticated_at, expires_at, absolute_expires_at, auth_method, user_agent, ip,
                      subject, email, is_guest, device_name, device_platform, auth_time)
SELECT md5('sub-session-' || h.n), s.tenant, s.account_id, 'sub-' || h.n, h.hash, s.idp_sid, s.created_at,
       s.last_authenticated_at, s.expires_at, s.absolute_expires_at, s.auth_method, s.user_agent, s.ip,
       s.subject, s.email, s.is_guest, 'subscriber ' || h.n, 'linux', s.auth_time
FROM sub_hashes h CROSS JOIN sessions s WHERE s.id = :'bob';
COMMIT;
SET session_replication_role = origin;
EOF
  SUBSCRIBER_TOKENS=(--subscriber-tokens "$WORK/subscriber-tokens.txt")
fi

if has revoke; then
echo "== revoke-to-SSE: $SUBSCRIBERS subscribers over $PROCESSES process(es), $REVOKES revokes" >&2
SUBSCRIBE_TO="$(IFS=,; echo "${REGISTRY_URLS[*]}")"
REGISTRY_PID_LIST="$(IFS=,; echo "${REGISTRY_PIDS[*]}")"
"$BIN/examples/revoke_latency" --issuer "$ISSUER" --registry "$REGISTRY" --user bob \
  --subscribers "$SUBSCRIBERS" --revokes "$REVOKES" --concurrency 8 \
  --subscribe-to "$SUBSCRIBE_TO" --pids "$REGISTRY_PID_LIST" "${SUBSCRIBER_TOKENS[@]}" | tee "$WORK/revoke.json" >&2
fi
LOAD_END="$(load_average)"

if [ "$PERF" = 1 ]; then
  for name in token jwt list; do
    perf report -i "$WORK/perf-$name.data" --no-children -g none --sort dso,symbol --stdio \
      --percent-limit 1.5 2>/dev/null | grep -v '^#' | grep -v '^$' \
      | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' \
      | head -n 20 >"$WORK/perf-$name.txt" || true
    perf report -i "$WORK/perf-$name.data" --no-children -g none --sort dso --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+$//' | head -n 6 >"$WORK/perf-$name-dso.txt" || true
    echo "-- perf, $name" >&2
    cat "$WORK/perf-$name.txt" >&2
  done
fi

if [ "$FULL" = 1 ]; then
export RESULTS WORK PGBENCH_TPS PGBENCH_LAT PGBENCH_TX PGBENCH_BUSY PGBENCH_PREPARED_TPS CONNECTIONS DURATION WARMUP
export ROWS LISTED SUBSCRIBERS REVOKES BASELINE_LABEL PROCESSES PGBENCH_P50 PGBENCH_P99 PGBENCH_P99_CORRECTED
{
  echo "$SECTION"
  echo
  echo "Measured $(now_utc) with \`$COMMAND\` on $(machine_line); PostgreSQL $PG_VERSION on the same machine ($PG_SETTINGS); $LOADGEN_VERSION. Load average (1/5/15 min) $LOAD_START before the runs, $LOAD_END after."
  echo
  python3 - <<'EOF'
import json, os, statistics

env = os.environ
runs = {r["name"]: r for r in map(json.loads, open(env["RESULTS"], encoding="utf-8"))}
pg = float(env["PGBENCH_TPS"])
pgp = float(env["PGBENCH_PREPARED_TPS"])
c = env["CONNECTIONS"]
names = {
    "token": f"`POST /v1/sessions/authenticate` by session token",
    "jwt": f"`POST /v1/sessions/authenticate` by session JWT",
    "list": f"`GET /v1/sessions` (list by account, {env['LISTED']} sessions)",
}
print("| workload | requests/s | p50 ms | p99 ms | requests | errors | registry CPU, cores | Postgres backends CPU, cores | load generator CPU, cores | machine CPU busy | ÷ pgbench -S |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
pg_p99_fixed = float(env["PGBENCH_P99_CORRECTED"])
print(f"| `pgbench -S -c {c} -j 2` (simple protocol) | {pg:.0f} | {float(env['PGBENCH_P50']):.2f} | {float(env['PGBENCH_P99']):.2f} (with wrk's correction: {pg_p99_fixed:.2f}) | {env['PGBENCH_TX']} | 0 | | | | {env['PGBENCH_BUSY']} % | 1.00 |")
print(f"| `pgbench -S -M prepared -c {c} -j 2` | {pgp:.0f} | | | | | | | | | {pgp / pg:.2f} |")
procs = int(env["PROCESSES"])
if "token-lb" in runs:
    names["token-lb"] = names["token"] + f", {procs} processes behind HAProxy"
    names["jwt-lb"] = names["jwt"] + f", {procs} processes behind HAProxy"
if "token-baseline" in runs:
    names["token-baseline"] = names["token"] + f" ({env['BASELINE_LABEL']})"
    names["jwt-baseline"] = names["jwt"] + f" ({env['BASELINE_LABEL']})"
for key, label in names.items():
    r = runs[key]
    print(
        f"| {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests']} | "
        f"{r['errors']} | {r['registry_cpu']:.2f} | {r['postgres_cpu']:.2f} | {r['loadgen_cpu']:.2f} | "
        f"{r['machine_busy']} % | {r['rps'] / pg:.2f} |"
    )
print()
print("wrk reports its latencies corrected for coordinated omission (wrk.c `stats_correct`: a request of at least twice a connection's mean interval adds the requests that would have waited behind it), and `pgbench -S` reports them as measured; the `pgbench -S` row gives its p99 both ways (`bench/lib/pgbench_log.py`), the corrected one being the one to set beside the registry's.")
print()
print("CPU per request, from the CPU columns (µs of CPU time per successful request; `pgbench -S`: all CPUs busy time per transaction, pgbench included):")
print()
print("| workload | registry | Postgres backends | load generator | all CPUs (machine busy) |")
print("| --- | ---: | ---: | ---: | ---: |")
ncpu = os.cpu_count() or 1
print(f"| `pgbench -S` | | | | {float(env['PGBENCH_BUSY']) / 100 * ncpu / pg * 1e6:.0f} |")
for key, label in names.items():
    r = runs[key]
    per = lambda cores: cores / r["rps"] * 1e6
    print(
        f"| {label} | {per(r['registry_cpu']):.0f} | {per(r['postgres_cpu']):.0f} | {per(r['loadgen_cpu']):.0f} | "
        f"{per(r['machine_busy'] / 100 * ncpu):.0f} |"
    )
print()
rv = json.load(open(os.path.join(env["WORK"], "revoke.json"), encoding="utf-8"))
print("| revoke → SSE delivery | processes | subscribers | revokes | samples | missed | p50 ms | p90 ms | p99 ms | max ms | revoke call p50 ms | resident memory per idle subscriber |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
per_sub = rv.get("kib_per_idle_subscriber")
per_sub_text = f"{per_sub:.1f} KiB" if per_sub is not None else ""
print(
    f"| `POST /v1/sessions/revoke` → `revoked` on `/v1/events` | {rv.get('processes', 1)} | {rv['subscribers']} | {rv['revokes']} | "
    f"{rv['samples']} | {rv['missed']} | {rv['p50_ms']:.2f} | {rv['p90_ms']:.2f} | {rv['p99_ms']:.2f} | "
    f"{rv['max_ms']:.2f} | {rv['revoke_call_p50_ms']:.2f} | {per_sub_text} |"
)
print()
tok, jwt = runs["token"]["rps"] / pg, runs["jwt"]["rps"] / pg
print("| target (from the issue) | measured | met? |")
print("| --- | ---: | --- |")
pairs_path = os.path.join(env["WORK"], "pairs.jsonl")
pairs = [json.loads(l) for l in open(pairs_path, encoding="utf-8")] if os.path.exists(pairs_path) else []
token_runs = [r for k, r in runs.items() if k == "token" or (k.startswith("token-r") and k[7:].isdigit())]


def target_row(target, many, figures, unit, ok, extra=""):
    """A target's row: its one figure, or the median of several (BENCH_REPEATS) with each listed."""
    if len(figures) > 1:
        mid = statistics.median(figures)
        label = f"{target}: the median of {len(figures)} {many}"
        value = f"{mid:.2f}{unit} ({', '.join(f'{f:.2f}' for f in figures)})"
    else:
        mid = figures[0]
        label, value = target, f"{mid:.2f}{unit}"
    print(f"| {label} | {value}{extra} | {'yes' if ok(mid) else 'no'} |")


target_row("authenticate by token ≥ 1.5 × `pgbench -S` (issue #14)",
           "pairs, each token run beside a `pgbench -S` run of its own",
           [p["ratio"] for p in pairs] if len(pairs) > 1 else [tok], " ×", lambda r: r >= 1.5)
target_row("authenticate by token p99 < 2 ms (issue #14)", "runs",
           [r["p99_ms"] for r in token_runs], " ms", lambda p: p < 2,
           f"; `pgbench -S` with the same correction: {pg_p99_fixed:.2f} ms")
print(f"| authenticate by JWT above `pgbench -S` | {100 * jwt:.0f} % | {'yes' if jwt > 1 else 'no'} |")
print(f"| revoke delivery p99 < 1 s | {rv['p99_ms']:.0f} ms | {'yes' if rv['p99_ms'] < 1000 and rv['missed'] == 0 else 'no'} |")
if procs > 1:
    print(f"| revoke → delivery to {rv['subscribers']:,} subscribers over {procs} processes: p99 < 100 ms, none missed (issue #14) | {rv['p99_ms']:.0f} ms, {rv['missed']} missed | {'yes' if rv['p99_ms'] < 100 and rv['missed'] == 0 else 'no'} |")
    if per_sub is not None:
        print(f"| resident memory per idle SSE subscriber < 16 KiB (issue #14) | {per_sub:.1f} KiB | {'yes' if per_sub < 16 else 'no'} |")
    for kind in ("token", "jwt"):
        one, many = runs[kind]["rps"], runs[f"{kind}-lb"]["rps"]
        print(f"| {kind} authenticate, {procs} processes behind HAProxy ÷ one process (same run) | {many / one:.2f} × ({many / pg:.2f} × `pgbench -S`) | (no target) |")
EOF
  echo
  echo "Data: $ROWS sessions in \`$DB\` (tenant acme): $SESSIONS seeded with SQL (\`INSERT … SELECT generate_series\`: $ACCOUNTS_SEEDED accounts with 10 sessions each, every session on its own device, then \`VACUUM ANALYZE\`; ${SEED_SECS} s), plus the sessions opened through the API. $TOKENS_SEEDED of the seeded sessions, spread evenly over the table, have real tokens: made in the registry's format (\`lyst_acme_\` + 44 base62 characters + the 6-character CRC-32 check of \`session-registry/src/token.rs\`) and stored as their SHA-256; authenticate by token presents one of them at random per request (a JSON body per line, picked by \`bench/lib/wrk-requests.lua\` or \`oha -Z\`), so each request resolves a random session among all $ROWS. Before its warm-up, a first pass presents every one of these tokens once ($CONNECTIONS keep-alive connections from \`bench/lib/first_pass.py\`; each is that session's first authenticate: a database read and a durable activity write): $(echo "$FIRST_PASS" | jq -r 'if . == null then "not run" else "\(.requests) requests in \(.seconds) s, \(.rps) per second, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms" end' 2>/dev/null || echo "not run"). Authenticate by JWT presents, at random, the session JWTs of alice's $CONNECTIONS sessions (opened through \`POST /v1/sessions\` with a real ID token from the mock IdP, each on its own device), minted just before the run; the list presents one of alice's session tokens. One $LOADGEN process ($LOADGEN_SHAPE), $CONNECTIONS keep-alive connections, ${WARMUP} s of warm-up (discarded), then ${DURATION} s; requests/s counts 2xx answers; p50 and p99 are $LOADGEN's. The registry runs with its defaults (2 actix workers, a pool of 16 Postgres connections) and \`RUST_LOG=warn\`. \`pgbench -S\` runs on \`$PGBENCH_DB\` (\`pgbench -i -s 10\`: 1,000,000 rows in \`pgbench_accounts\`) on the same server over TCP $PG_TLS_NOTE, one SELECT per transaction. Its p50 and p99 come from one transaction in ten, logged (\`pgbench -l --sampling-rate 0.1\`, \`bench/lib/pgbench_log.py\`). The CPU columns are CPU time (user + system) per second of the measured run: the registry process, the Postgres backends serving its pool (\`pg_stat_activity\`, \`/proc\`) and $LOADGEN; machine CPU busy counts all CPUs (\`/proc/stat\`): $LOADGEN, Postgres and the registry share the $(nproc) cores, as pgbench and Postgres do in the first row."
  echo
  echo "What each request costs in Postgres: authenticate by token checks the token's format and checksum first (a malformed token never reaches the database); a token whose session was read in the last 60 s is answered from the process's session cache (\`session-registry/src/service/session_cache.rs\`, issue #14: only while the event feed is connected, no event of the account arrived since and the session is not in the revoked set), so each of the 10,000 tokens goes to the database about once a minute. Otherwise it looks it up on the registry's own lookup connections (\`session-registry/src/store/pg_hot.rs\`, tokio-postgres): each actix worker thread has one connection, and the lookups its requests start while a statement is in flight wait and go together as the next one, \`SELECT … FROM sessions WHERE tenant = \$1 AND token_hash = ANY(\$2)\` (one statement per tenant in the batch, pipelined); no timer holds a batch back, so a lookup waits at most for the batch in flight. In the measured token run: $TOKEN_BATCHING (\`lanyard_registry_token_lookups_total\` and \`lanyard_registry_token_lookup_statements_total\` on \`/metrics\`, before and after). The connection runs as \`lanyard_app\` with its \`lanyard.tenant\` set at session level ahead of a statement of another tenant, so row-level security applies as on every other query. Sessions carry copies of their account's and device's fields, so the statement reads one table. The tenant's settings come from memory (re-read every 10 s). The activity is recorded (\`UPDATE sessions\`, \`UPDATE devices\`, a durable commit) only when the recorded time is a minute old or more, so a steady heartbeat is a read; the seeded sessions were last active an hour before the run, so each records its activity once, in the first pass, and the measured ${DURATION} s are reads, as a heartbeat is between its once-a-minute writes. The answer carries the session JWT minted for the session in the last 30 s, else a newly signed one. Authenticate by JWT, within a minute of the JWT's last database check, remembers the ES256 verification per JWT (expiry and the pushed revocation set are checked every time) and reuses the recently minted JWT: no database and, in the steady state, no P-256 arithmetic. The list resolves the token, then reads the account's sessions (a transaction with the joins)."
  echo
  echo "Reading the CPU columns: \`pgbench -S\` sends one statement per round trip on each of its 16 connections, and at this size most of what a point select costs is the round trip (wake-ups, system calls, protocol), not the index lookup. The registry's batches spread that over several lookups: its Postgres backends spend less per token than a \`pgbench -S\` transaction costs the machine, which leaves room for the HTTP, JSON and SHA-256 work in the registry and for wrk on the same 2 cores. How it got here (runs of this script, token ÷ \`pgbench -S\`): 4 % (17:28 UTC, sqlx pool, transaction per lookup, oha), 23–30 % (19:17 and 18:38 UTC: one round trip through a PL/pgSQL function that set the tenant per statement, sqlx connections without the release ping), 33 % (20:11 UTC: the same statement on tokio-postgres, 4 shared pipelined connections), 42 % (20:16 UTC: one connection per worker thread, no cross-thread wake-ups), then batching, first through a PL/pgSQL function per batch and then as the plain statement above, which \`pgbench\` showed costs Postgres about half as much per token as the function (pipelined batches of 4: 11 µs against 20 µs of machine time per token). An earlier try at batching (19:32 UTC, 27 %) grouped lookups across threads on sqlx connections; the cross-thread hand-offs ate the gain. Before the seeded sessions started stale, runs of the same build moved between 40 and 70 %: whether the once-a-minute activity writes of the 10,000 tokens fell into the warm-up or the measured seconds depended on how long the seeding took. Authenticate by JWT does not touch the database and is above the \`pgbench -S\` figure."
  if [ -n "$BASELINE_BIN" ]; then
    echo
    echo "The rows marked ($BASELINE_LABEL) ran \`$BASELINE_BIN\` on the same database in the same run${BENCH_BASELINE_NOTE:+: $BENCH_BASELINE_NOTE}."
  fi
  echo
  if [ "$SUBSCRIBERS" -gt 100 ]; then
    SUBSCRIBER_ORIGIN="sessions of bob seeded with SQL (bob signs in once through the IdP and the API; $SUBSCRIBERS copies of that session, each with a real token of its own and a device of its own)"
  else
    SUBSCRIBER_ORIGIN="sessions of bob opened through the API (a sign-in each, each on its own device)"
  fi
  echo "Revoke → SSE: \`session-registry/examples/revoke_latency.rs\` connects $SUBSCRIBERS $SUBSCRIBER_ORIGIN to \`GET /v1/events\`, and opens $REVOKES more to revoke and one to revoke with; a sample is one (subscriber, revoke): from just before \`POST /v1/sessions/revoke\` is sent to the moment that subscriber has read the \`revoked\` frame. Each subscriber is a plain TCP connection written and read by hand (the frame found by scanning the bytes for \`event: revoked\` and its \`session_id\`): a client that decodes and parses every event with an HTTP library spends, on these shared cores, CPU the registries then do not get (before this change, reqwest and a JSON parse per event: p99 177 ms for 10,000 subscribers, 90 ms after, same build). At most 256 subscribers connect at a time (\`--connect-concurrency\`), as a fleet's reconnects spread out. On Postgres the event goes out with \`pg_notify\` in the revoking transaction, comes back through the registry's \`LISTEN\` connection and is fanned out to the streams, as it would reach subscribers of another registry process."
  if [ "$PROCESSES" != 1 ]; then
    echo
    echo "$PROCESSES processes: $PROCESSES \`session-registry\` processes on the one database with \`--events $EVENTS\` (the outbox and JetStream), one \`--key-encryption-key\` and one \`--public-url\` (HAProxy's), each with its defaults (2 actix workers, 16 pooled connections, its own lookup connections and session cache). The plain rows load the first process alone; the rows marked \"behind HAProxy\" load all of them through HAProxy $HAPROXY_VERSION (\`mode http\`, \`balance roundrobin\`), and their registry CPU column sums the $PROCESSES processes and HAProxy. Everything shares the same $(nproc) cores: a second and third process add parallel event loops, not CPU. The SSE subscribers connect round-robin to the processes directly (each stream is one long request), sessions are opened and revoked through the first; memory per idle subscriber is the growth of the processes' summed resident memory (\`VmRSS\`) from just before the streams open to 2 s after the last one connected, divided by the subscribers: the stream, its connection and the session-cache entry its authenticate left."
  fi
  if [ "$PERF" = 1 ]; then
    for name in token jwt list; do
      echo
      echo "\`perf record -F 999 -g -p <registry>\` during the $name run: self time by DSO, then by symbol (entries ≥ 1.5 %):"
      echo
      echo '```text'
      cat "$WORK/perf-$name-dso.txt"
      echo
      cat "$WORK/perf-$name.txt"
      echo '```'
    done
  fi
} >"$WORK/section.md"

echo
cat "$WORK/section.md"
echo
fi

if [ -n "$RESULTS_DIR" ]; then
  # The raw figures, for bench/all.sh and bench/plot.
  mkdir -p "$RESULTS_DIR"
  cp "$RESULTS" "$RESULTS_DIR/runs.jsonl"
  for f in pgbench.latency.json lookup.latency.json revoke.json sweep.jsonl token.batching.json first-pass.json pairs.jsonl reference.jsonl starts.tsv section.md; do
    if [ -f "$WORK/$f" ]; then cp "$WORK/$f" "$RESULTS_DIR/${f/.latency/}"; fi
  done
  for f in "$WORK"/*.hist.csv; do
    case "$f" in *-warmup.hist.csv) ;; *) [ -f "$f" ] && cp "$f" "$RESULTS_DIR/" ;; esac
  done
  # BENCH_PERF's profiles, for `perf report -i` after the work folder is gone.
  for f in "$WORK"/perf-*; do
    [ -f "$f" ] && cp "$f" "$RESULTS_DIR/"
  done
  if [ -f "$RESULTS_DIR/pgbench.json" ]; then
    jq -c --arg tps "$PGBENCH_TPS" --arg prepared "${PGBENCH_PREPARED_TPS:-}" --argjson c "$CONNECTIONS" \
      '. + {tps: ($tps | tonumber), prepared_tps: (if $prepared == "" then null else ($prepared | tonumber) end), connections: $c}' \
      "$RESULTS_DIR/pgbench.json" >"$RESULTS_DIR/pgbench.json.tmp" && mv "$RESULTS_DIR/pgbench.json.tmp" "$RESULTS_DIR/pgbench.json"
  fi
  if [ -f "$RESULTS_DIR/lookup.json" ]; then
    jq -c --arg tps "$(pgbench_tps lookup)" '. + {tps: ($tps | tonumber)}' "$RESULTS_DIR/lookup.json" \
      >"$RESULTS_DIR/lookup.json.tmp" && mv "$RESULTS_DIR/lookup.json.tmp" "$RESULTS_DIR/lookup.json"
  fi
  jq -n --arg command "$COMMAND" --arg machine "$(machine_line)" --arg measured "$(now_utc)" \
    --arg pg_version "$PG_VERSION" --arg pg_settings "$PG_SETTINGS" \
    --argjson sessions "$SESSIONS" --argjson rows "$ROWS" --argjson seed_secs "$SEED_SECS" \
    --argjson tokens "$TOKENS_SEEDED" --argjson connections "$CONNECTIONS" \
    --argjson duration "$DURATION" --argjson warmup "$WARMUP" --arg workloads "$WORKLOADS" \
    --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" --arg loadgen "$LOADGEN_VERSION" \
    --arg token_batching "$TOKEN_BATCHING" --arg reference "$REFERENCE" \
    --arg paced "$PACED" --arg paced_secs "$PACED_SECS" --arg restarts "$RESTARTS" \
    '{command: $command, machine: $machine, measured: $measured, pg_version: $pg_version,
      pg_settings: $pg_settings, sessions: $sessions, rows: $rows, seed_secs: $seed_secs,
      tokens: $tokens, connections: $connections, duration: $duration, warmup: $warmup,
      workloads: $workloads, load_start: $load_start, load_end: $load_end, loadgen: $loadgen,
      token_batching: $token_batching,
      reference_sessions: (if $reference == "" then null else ($reference | tonumber) end),
      paced_delay_ms: (if $paced == "" then null else ($paced | tonumber) end),
      paced_duration: ($paced_secs | tonumber), restarts: ($restarts == "1")}' >"$RESULTS_DIR/meta.json"
  echo "bench/registry.sh: raw figures in $RESULTS_DIR" >&2
fi

# The sweep's errors are in its own figures (sweep.jsonl); they do not hold back the section.
ERRORS="$(jq -s 'map(select(.name | (startswith("sweep-") or startswith("settle-")) | not) | .errors) | add // 0' "$RESULTS")"
SWEEP_ERRORS="$(jq -s 'map(select(.name | startswith("sweep-")) | .errors) | add // 0' "$RESULTS")"
SETTLE_ERRORS="$(jq -s 'map(select(.name | startswith("settle-")) | .errors) | add // 0' "$RESULTS")"
if [ "$SETTLE_ERRORS" != 0 ]; then
  # The runs that absorb a fresh process's first seconds: counted and said, in no verdict.
  echo "bench/registry.sh: the settle runs after the restarts counted $SETTLE_ERRORS errors (see runs.jsonl)" >&2
fi
if [ "$SWEEP_ERRORS" != 0 ]; then
  echo "bench/registry.sh: the connections sweep counted $SWEEP_ERRORS errors (see sweep.jsonl)" >&2
fi
MISSED=0
if [ -f "$WORK/revoke.json" ]; then MISSED="$(jq .missed "$WORK/revoke.json")"; fi
if { [ "$ERRORS" != 0 ] || [ "$MISSED" != 0 ]; } && [ "${BENCH_ALLOW_ERRORS:-0}" != 1 ]; then
  KEPT="$(mktemp -d /tmp/bench-registry-XXXXXX)"
  cp "$WORK"/*.err "$WORK"/*.wrk-out "$WORK"/*.json "$KEPT"/ 2>/dev/null || true
  echo "bench/registry.sh: $ERRORS errors, $MISSED missed events; not writing ${DOC:-the document} (BENCH_ALLOW_ERRORS=1 to write anyway); the servers' logs and the load generator's output are kept in $KEPT" >&2
  exit 1
fi
if [ -n "$DOC" ] && [ "$FULL" = 1 ]; then
  python3 bench/lib/write_section.py "$DOC" "$SECTION" "$WORK/section.md"
  echo "bench/registry.sh: wrote the section into $DOC" >&2
fi
