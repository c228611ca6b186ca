#!/usr/bin/env bash
# Every benchmark and run of issue #16 in one command, with a summary and plots.
#
#   nice -n 15 bench/all.sh                     # everything, long preset (an hour or more)
#   ALL_QUICK=1 bench/all.sh                    # short smoke run of everything; writes no doc
#   ALL_ONLY="registry curve" bench/all.sh      # some steps only
#   ALL_SKIP="soak cli" bench/all.sh            # all but some
#
# Steps, in order (each a script of its own, which also runs alone):
#   core      bench/core.sh      session-core access_token (criterion)
#   store     bench/store.sh     account-store backends (criterion)
#   cli       bench/cli.sh       lanyard token/accounts/prompt (hyperfine), anchor `gh auth token`
#   idp       bench/idp.sh       mock-idp token endpoint, anchor panva's oidc-provider
#   registry  bench/registry.sh  authenticate/list/revoke at ALL_REGISTRY_SESSIONS sessions, anchor
#                                `pgbench -S`, plus the connections sweep (BENCH_SWEEP)
#   scale     bench/registry.sh  3 registry processes behind HAProxy on NATS (BENCH_PROCESSES=3):
#                                revoke delivery to ALL_SCALE_SUBSCRIBERS SSE subscribers, memory
#                                per idle subscriber
#   curve     bench/registry.sh  once per size of CURVE_SESSIONS, with only `pgbench -S`,
#                                authenticate by token and by JWT, and the token-hash statement
#                                on the sessions table (BENCH_WORKLOADS="pgbench token jwt lookup")
#   fuzz      scripts/fuzz       every cargo-fuzz target for FUZZ_SECONDS
#   scenarios scripts/scenarios  the multi-device scenarios and the scripted faults (tests of the
#                                suite, run alone: real processes, Postgres, NATS), with a table
#   hostile   scripts/hostile    schemathesis against the registry's and the IdP admin API's
#                                OpenAPI documents for HOSTILE_SECONDS each
#   soak      bench/soak.sh      mixed traffic for SOAK_SECONDS, then an audit
#
# Each step writes its own section of docs/benchmarks.md (the soak, the fuzzing, the scenarios and
# faults, and the hostile input: docs/reliability.md) as it
# does alone, and its raw figures under the results folder (bench/results/<UTC time>/, git-ignored):
# STEP/ (JSON, CSV, the section), STEP.log (its output), steps.tsv (status and seconds per step),
# and, assembled from them, curve.csv, sweep.csv and the latency distributions. Then
# lanyard-bench-plot (bench/plot) draws the SVGs into docs/plots/ and bench/lib/all_summary.py
# writes the sections "## Summary" (each target, the figure, the anchor, met or not, with the
# command and the machine) and "## Sessions curve and connections sweep" of docs/benchmarks.md.
# A step that fails is recorded and the others go on; the exit status is 1 if any failed.
#
# Environment (the quick preset's value in brackets):
#   ALL_QUICK              1: the short preset below, and no document written unless ALL_DOC is set
#   ALL_ONLY / ALL_SKIP    steps to run / to leave out (default: all; see ALL_SOAK). ALL_ONLY=report
#                          runs none: with ALL_RESULTS, it only redraws and rewrites the report
#   ALL_SOAK               1 (default): the soak is a step of "all"; 0 leaves it out
#   ALL_DOC                benchmarks document (default docs/benchmarks.md, quick: ""; "" = none)
#   ALL_PLOTS              folder of the SVGs (default docs/plots; with no document: RESULTS/plots)
#   ALL_RESULTS            results folder (default bench/results/<UTC time>); an earlier run's
#                          folder re-runs the steps selected into it and reports them with the
#                          figures of the steps it keeps
#   ALL_REGISTRY_SESSIONS  sessions of the registry and scale steps (1000000 [100000])
#   ALL_REGISTRY_REPEATS   token and JWT runs of the registry step, each token run beside a
#                          `pgbench -S` run of its own; the verdicts take the median (3 [1])
#   ALL_SCALE_SUBSCRIBERS  SSE subscribers of the scale step (10000 [1000])
#   ALL_SCALE_EVENTS       its event transport (default nats://127.0.0.1:4222)
#   BENCH_DURATION         measured seconds per HTTP/pgbench run (20 [5])
#   BENCH_WARMUP           warm-up seconds per HTTP run (5 [2])
#   BENCH_CONNECTIONS      connections of the registry and idp runs (16)
#   BENCH_SWEEP            connection counts of the sweep ("1 4 16 64" ["1 4 16"]; "" = none)
#   CURVE_SESSIONS         sizes of the sessions curve ("10000 100000 1000000 10000000"
#                          ["10000 100000"]); a size the disk under Postgres cannot hold
#                          (2 KiB per session + 2 GiB spare) is skipped and said so
#   CURVE_WORKLOADS        workloads per size ("pgbench token jwt lookup")
#   CURVE_REPEATS          token and JWT runs per size, the curve taking each size's median
#                          (5; quick: 1): one 20 s p99 on 2 shared cores moves by more than 20 %
#   CURVE_REFERENCE        sessions of the same-run reference (default: the smallest size; ""
#                          for none): every larger size also seeds a database of this many, with
#                          a registry of its own, and runs each token and JWT run against it back
#                          to back with its own (bench/registry.sh BENCH_REFERENCE_SESSIONS); the
#                          curve's verdicts are the median of those same-minute ratios; both
#                          processes are started again before each repeat, in alternating order
#   CURVE_PACED            ms each connection pauses after an answer in the curve's fixed-rate
#                          runs (2, about 7,000 requests/s over 16 connections; "" for none):
#                          every token and JWT run is followed by the same workload below
#                          saturation, with verdicts of its own
#   CRITERION_MEASUREMENT  criterion seconds per benchmark, core and store (3 [1])
#   CLI_RUNS               hyperfine runs per command (50 [10])
#   FUZZ_SECONDS           per fuzz target (60 [10])
#   HOSTILE_SECONDS        schemathesis seconds per API (120 [20])
#   SOAK_SECONDS           soak length (900 [60]); docs/reliability.md is written only by a soak
#                          of 600 s or more (over 631 s shows the IdP's tombstones dropped)
#   BENCH_PG               libpq options of the local Postgres
#
# Honours CARGO_TARGET_DIR (every script does). Run it under `nice` on a shared machine. Needs what
# the scripts need (psql, pgbench, wrk, hyperfine, jq, node/npm, gh for the CLI anchor, python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. bench/lib/common.sh

# The command as given, for the documents: the presets and every setting that was set.
COMMAND=""
for v in ALL_QUICK ALL_ONLY ALL_SKIP ALL_SOAK ALL_REGISTRY_SESSIONS ALL_REGISTRY_REPEATS ALL_SCALE_SUBSCRIBERS BENCH_DURATION BENCH_WARMUP \
  BENCH_CONNECTIONS BENCH_SWEEP CURVE_SESSIONS CURVE_WORKLOADS CURVE_REPEATS CURVE_REFERENCE CURVE_PACED CRITERION_MEASUREMENT CLI_RUNS \
  FUZZ_SECONDS HOSTILE_SECONDS SOAK_SECONDS; do
  if [ -n "${!v+x}" ]; then COMMAND="$COMMAND$v=\"${!v}\" "; fi
done
COMMAND="${COMMAND}bench/all.sh"

QUICK="${ALL_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  D_DURATION=5 D_WARMUP=2 D_SWEEP="1 4 16" D_CURVE="10000 100000" D_CURVE_REPEATS=1 D_REGISTRY=100000 D_REGISTRY_REPEATS=1
  D_CRITERION=1 D_CLI_RUNS=10 D_FUZZ=10 D_HOSTILE=20 D_SOAK=60 D_DOC="" D_SCALE_SUBSCRIBERS=1000
else
  D_DURATION=20 D_WARMUP=5 D_SWEEP="1 4 16 64" D_CURVE="10000 100000 1000000 10000000" D_CURVE_REPEATS=5
  D_REGISTRY=1000000 D_REGISTRY_REPEATS=3 D_CRITERION=3 D_CLI_RUNS=50 D_FUZZ=60 D_HOSTILE=120 D_SOAK=900 D_DOC=docs/benchmarks.md
  D_SCALE_SUBSCRIBERS=10000
fi
DURATION="${BENCH_DURATION:-$D_DURATION}"
WARMUP="${BENCH_WARMUP:-$D_WARMUP}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
SWEEP="${BENCH_SWEEP-$D_SWEEP}"
CURVE_SESSIONS="${CURVE_SESSIONS:-$D_CURVE}"
CURVE_WORKLOADS="${CURVE_WORKLOADS:-pgbench token jwt lookup}"
CURVE_REPEATS="${CURVE_REPEATS:-$D_CURVE_REPEATS}"
# The fixed-rate runs need wrk's delay() hook: none by default with oha.
if [ "${BENCH_LOADGEN:-wrk}" = wrk ]; then CURVE_PACED="${CURVE_PACED-2}"; else CURVE_PACED="${CURVE_PACED-}"; fi
CURVE_REFERENCE="${CURVE_REFERENCE-$(tr ' ' '\n' <<<"$CURVE_SESSIONS" | grep . | sort -n | head -n1)}"
REGISTRY_SESSIONS="${ALL_REGISTRY_SESSIONS:-$D_REGISTRY}"
REGISTRY_REPEATS="${ALL_REGISTRY_REPEATS:-$D_REGISTRY_REPEATS}"
SCALE_SUBSCRIBERS="${ALL_SCALE_SUBSCRIBERS:-$D_SCALE_SUBSCRIBERS}"
SCALE_EVENTS="${ALL_SCALE_EVENTS:-nats://127.0.0.1:4222}"
CRITERION_MEASUREMENT="${CRITERION_MEASUREMENT:-$D_CRITERION}"
CLI_RUNS="${CLI_RUNS:-$D_CLI_RUNS}"
FUZZ_SECONDS="${FUZZ_SECONDS:-$D_FUZZ}"
HOSTILE_SECONDS="${HOSTILE_SECONDS:-$D_HOSTILE}"
SOAK_SECONDS="${SOAK_SECONDS:-$D_SOAK}"
DOC="${ALL_DOC-$D_DOC}"
PG="${BENCH_PG:-host=127.0.0.1 port=5432 user=postgres}"
STAMP="$(date -u '+%Y%m%dT%H%M%SZ')"
RES="${ALL_RESULTS:-bench/results/$STAMP}"
if [ -n "$DOC" ]; then PLOTS="${ALL_PLOTS:-docs/plots}"; else PLOTS="${ALL_PLOTS:-$RES/plots}"; fi

STEPS=(core store cli idp registry scale curve fuzz scenarios hostile)
[ "${ALL_SOAK:-1}" = 1 ] && STEPS+=(soak)
ONLY="${ALL_ONLY:-${STEPS[*]}}"
SKIP="${ALL_SKIP:-}"
for s in $ONLY $SKIP; do
  case " core store cli idp registry scale curve fuzz scenarios hostile soak report " in
    *" $s "*) ;;
    *) echo "bench/all.sh: no step '$s' (steps: core store cli idp registry scale curve fuzz scenarios hostile soak)" >&2; exit 2 ;;
  esac
done
selected() {
  case " $ONLY " in *" $1 "*) ;; *) return 1 ;; esac
  case " $SKIP " in *" $1 "*) return 1 ;; esac
  return 0
}


mkdir -p "$RES"
RES="$(cd "$RES" && pwd)"
echo "bench/all.sh: results in $RES" >&2
MACHINE="$(machine_line)"
if [ -s "$RES/run.json" ]; then
  # An earlier run's folder (ALL_RESULTS): the steps run now replace theirs; the others, their
  # figures and their status stay, and the report names both commands.
  for s in core store cli idp registry scale curve fuzz scenarios hostile soak; do
    if selected "$s"; then
      [ "$s" = curve ] && rm -rf "$RES"/curve-[0-9]* "$RES/curve-sizes.tsv"
      rm -rf "${RES:?}/$s"
      awk -F '\t' -v s="$s" '$1 != s && !(s == "curve" && $1 ~ /^curve-/)' "$RES/steps.tsv" >"$RES/steps.tsv.tmp"
      mv "$RES/steps.tsv.tmp" "$RES/steps.tsv"
    fi
  done
  if [ "$ONLY" != report ]; then
    jq --arg command "$COMMAND" --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
      '.command = .command + "`, then `" + $command | .commit = .commit + ", then " + $commit' \
      "$RES/run.json" >"$RES/run.json.tmp" && mv "$RES/run.json.tmp" "$RES/run.json"
  fi
else
  : >"$RES/steps.tsv"
  jq -n --arg command "$COMMAND" --arg machine "$MACHINE" --arg started "$(now_utc)" \
    --arg quick "$QUICK" --arg load "$(load_average)" --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson nice "$(nice)" \
    '{command: $command, machine: $machine, started: $started, quick: ($quick == "1"), load_start: $load, commit: $commit, nice: $nice}' \
    >"$RES/run.json"
fi
SESSIONS_LABEL() { python3 -c 'import json, sys; print(format(json.load(open(sys.argv[1]))["sessions"], ","))' "$1" 2>/dev/null || echo "?"; }

FAILED=()
# step NAME CMD...: runs CMD (output to RES/NAME.log), records its status and seconds.
step() {
  local name="$1" t0 rc
  shift
  echo "== [$name] $*" >&2
  t0="$(date +%s)"
  set +e
  "$@" >"$RES/$name.log" 2>&1
  rc=$?
  set -e
  printf '%s\t%s\t%s\n' "$name" "$([ "$rc" = 0 ] && echo ok || echo "failed ($rc)")" "$(($(date +%s) - t0))" >>"$RES/steps.tsv"
  if [ "$rc" != 0 ]; then
    FAILED+=("$name")
    echo "   [$name] failed ($rc); last lines of $RES/$name.log:" >&2
    tail -n 15 "$RES/$name.log" >&2
  else
    echo "   [$name] ok in $(($(date +%s) - t0)) s" >&2
  fi
  return 0
}

if selected core; then
  step core env BENCH_RESULTS="$RES/core" BENCH_DOC="$DOC" BENCH_WARMUP=1 \
    BENCH_MEASUREMENT="$CRITERION_MEASUREMENT" bench/core.sh
fi
if selected store; then
  step store env BENCH_RESULTS="$RES/store" BENCH_DOC="$DOC" BENCH_WARMUP=1 \
    BENCH_MEASUREMENT="$CRITERION_MEASUREMENT" bench/store.sh
fi
if selected cli; then
  step cli env BENCH_RESULTS="$RES/cli" BENCH_DOC="$DOC" BENCH_RUNS="$CLI_RUNS" bench/cli.sh
fi
if selected idp; then
  step idp env BENCH_RESULTS="$RES/idp" BENCH_DOC="$DOC" BENCH_DURATION="$DURATION" \
    BENCH_WARMUP="$WARMUP" BENCH_CONNECTIONS="$CONNECTIONS" bench/idp.sh
fi
if selected registry; then
  step registry env BENCH_RESULTS="$RES/registry" BENCH_DOC="$DOC" BENCH_DURATION="$DURATION" \
    BENCH_WARMUP="$WARMUP" BENCH_CONNECTIONS="$CONNECTIONS" BENCH_SESSIONS="$REGISTRY_SESSIONS" \
    BENCH_SWEEP="$SWEEP" BENCH_REPEATS="$REGISTRY_REPEATS" bench/registry.sh
fi

if selected scale; then
  step scale env BENCH_RESULTS="$RES/scale" BENCH_DOC="$DOC" BENCH_DURATION="$DURATION" \
    BENCH_WARMUP="$WARMUP" BENCH_CONNECTIONS="$CONNECTIONS" BENCH_SESSIONS="$REGISTRY_SESSIONS" \
    BENCH_PROCESSES=3 BENCH_EVENTS="$SCALE_EVENTS" BENCH_SUBSCRIBERS="$SCALE_SUBSCRIBERS" bench/registry.sh
fi

drop_bench_databases() {
  psql "$PG dbname=postgres" -qAt -c "DROP DATABASE IF EXISTS lanyard_bench WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS lanyard_pgbench WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS lanyard_bench_ref WITH (FORCE)" >/dev/null 2>&1 || true
}

if selected curve; then
  : >"$RES/curve-sizes.tsv"
  for n in $CURVE_SESSIONS; do
    # The sessions, their devices and indexes took about 1.3 KiB per session at 10 M here; keep
    # 2 KiB each and 2 GiB spare.
    pgdata="$(psql "$PG dbname=postgres" -qAt -c 'SHOW data_directory' 2>/dev/null || echo /var/lib/postgresql)"
    avail="$(df --output=avail -B1 "$pgdata" 2>/dev/null | tail -n1 || echo 0)"
    need=$((n * 2048 + 2 * 1024 * 1024 * 1024))
    if [ "$avail" -lt "$need" ]; then
      echo "   [curve] $n sessions skipped: $((avail >> 20)) MiB free under $pgdata, $((need >> 20)) MiB needed" >&2
      printf '%s\tskipped (disk: %s MiB free, %s MiB needed)\t0\n' "curve-$n" "$((avail >> 20))" "$((need >> 20))" >>"$RES/steps.tsv"
      continue
    fi
    reference=""
    if [ -n "$CURVE_REFERENCE" ] && [ "$n" -gt "$CURVE_REFERENCE" ]; then reference="$CURVE_REFERENCE"; fi
    step "curve-$n" env BENCH_RESULTS="$RES/curve-$n" BENCH_DOC="" BENCH_DURATION="$DURATION" \
      BENCH_WARMUP="$WARMUP" BENCH_CONNECTIONS="$CONNECTIONS" BENCH_SESSIONS="$n" BENCH_REFERENCE_SESSIONS="$reference" \
      BENCH_PACED_DELAY_MS="$CURVE_PACED" BENCH_WORKLOADS="$CURVE_WORKLOADS" BENCH_REPEATS="$CURVE_REPEATS" bench/registry.sh
    size="$(psql "$PG dbname=postgres" -qAt -c "SELECT pg_database_size('lanyard_bench')" 2>/dev/null || echo 0)"
    printf '%s\t%s\n' "$n" "$size" >>"$RES/curve-sizes.tsv"
  done
fi
if selected registry || selected curve; then
  drop_bench_databases
fi

if selected fuzz; then
  step fuzz env BENCH_RESULTS="$RES/fuzz" FUZZ_SECONDS="$FUZZ_SECONDS" scripts/fuzz
fi
# The reliability document: where the soak, the fuzzing, the scenarios and the hostile input go.
RELIABILITY_DOC=""
if [ -n "$DOC" ]; then RELIABILITY_DOC="${SOAK_DOC-docs/reliability.md}"; fi
if selected scenarios; then
  step scenarios env BENCH_RESULTS="$RES/scenarios" SCENARIOS_DOC="$RELIABILITY_DOC" \
    SCENARIOS_COMMAND="$COMMAND\` (its step \`scenarios\`: \`scripts/scenarios" scripts/scenarios
fi
if selected hostile; then
  step hostile env HOSTILE_OUT="$RES/hostile" HOSTILE_DOC="$RELIABILITY_DOC" \
    HOSTILE_SECONDS="$HOSTILE_SECONDS" scripts/hostile
fi
if selected soak; then
  SOAK_DOC_FOR_RUN=""
  # Only a soak of ten minutes or more speaks for docs/reliability.md (issue #16).
  if [ "$SOAK_SECONDS" -ge 600 ] && [ -n "$DOC" ]; then SOAK_DOC_FOR_RUN="${SOAK_DOC-docs/reliability.md}"; fi
  step soak env BENCH_RESULTS="$RES/soak" SOAK_SECONDS="$SOAK_SECONDS" SOAK_DOC="$SOAK_DOC_FOR_RUN" bench/soak.sh
fi

if [ "$ONLY" != report ]; then
  jq --arg finished "$(now_utc)" --arg load "$(load_average)" '. + {finished: $finished, load_end: $load}' \
    "$RES/run.json" >"$RES/run.json.tmp" && mv "$RES/run.json.tmp" "$RES/run.json"
fi

echo "== assembling the figures" >&2
python3 bench/lib/all_figures.py "$RES"

echo "== plots into $PLOTS" >&2
PLOT_ARGS=()
for h in token jwt pgbench; do
  [ -s "$RES/registry/$h.hist.csv" ] || continue
  case "$h" in
    token) label="authenticate by session token" ;;
    jwt) label="authenticate by session JWT" ;;
    pgbench) label="pgbench -S (anchor; 1 transaction in 10 logged)" ;;
  esac
  PLOT_ARGS+=(--histogram "$label=$RES/registry/$h.hist.csv")
done
if [ "${#PLOT_ARGS[@]}" -gt 0 ]; then
  PLOT_ARGS+=(--histogram-title "Latency distribution, $CONNECTIONS connections, $(SESSIONS_LABEL "$RES/registry/meta.json") sessions")
fi
[ -s "$RES/sweep.csv" ] && PLOT_ARGS+=(--sweep "$RES/sweep.csv" --sweep-title "Throughput against connections ($(SESSIONS_LABEL "$RES/registry/meta.json") sessions)")
# The target's line on the series the target is judged on: the fixed-rate token runs where made.
CURVE_TARGET="authenticate by token"
if grep -q "^[0-9]*,authenticate by token at a fixed rate," "$RES/curve.csv" 2>/dev/null; then CURVE_TARGET="authenticate by token at a fixed rate"; fi
[ -s "$RES/curve.csv" ] && PLOT_ARGS+=(--curve "$RES/curve.csv" --curve-target "$CURVE_TARGET")
if [ "${#PLOT_ARGS[@]}" -gt 0 ]; then
  if cargo build --release -p lanyard-bench-plot >"$RES/plot-build.log" 2>&1; then
    "${CARGO_TARGET_DIR:-$ROOT/target}/release/lanyard-bench-plot" --out "$PLOTS" "${PLOT_ARGS[@]}" | tee "$RES/plots.txt" >&2
  else
    echo "bench/all.sh: lanyard-bench-plot did not build (see $RES/plot-build.log)" >&2
    FAILED+=(plot)
  fi
fi

echo "== summary" >&2
ALL_COMMAND="$(jq -r .command "$RES/run.json")" ALL_PLOTS="$PLOTS" ALL_DOC="$DOC" python3 bench/lib/all_summary.py "$RES" >"$RES/summary.md"
cat "$RES/summary.md"
if [ -n "$DOC" ]; then
  python3 bench/lib/write_section.py "$DOC" "## Summary" "$RES/summary.md" --top
  if [ -s "$RES/curve-section.md" ]; then
    python3 bench/lib/write_section.py "$DOC" "## Sessions curve and connections sweep" "$RES/curve-section.md"
  fi
  if [ -s "$RES/fuzz-section.md" ]; then
    python3 bench/lib/write_section.py "${SOAK_DOC-docs/reliability.md}" "## Fuzzing" "$RES/fuzz-section.md"
  fi
  echo "bench/all.sh: wrote the summary into $DOC" >&2
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "bench/all.sh: failed: ${FAILED[*]} (logs in $RES)" >&2
  exit 1
fi
if [ "$ONLY" = report ]; then
  echo "bench/all.sh: report redrawn from $RES" >&2
else
  echo "bench/all.sh: every step ran; results in $RES" >&2
fi
