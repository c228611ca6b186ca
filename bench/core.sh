#!/usr/bin/env bash
# session-core: SessionManager::access_token with a fresh token, warm and from a cold start.
#
#   bench/core.sh                                   # 1 s warm-up + 3 s measured per benchmark
#   BENCH_MEASUREMENT=10 bench/core.sh              # longer
#
# Runs `cargo bench -p session-core --bench manager` (session-core/benches/manager.rs, criterion;
# no network: the account is saved straight into the store), prints a Markdown table (criterion's
# median and its 95 % confidence interval) and writes it into docs/benchmarks.md, section
# "## session-core" (other sections are left alone).
#
# Environment:
#   BENCH_WARMUP       criterion --warm-up-time, seconds (default 1)
#   BENCH_MEASUREMENT  criterion --measurement-time, seconds (default 3)
#   BENCH_DOC          document to update (default docs/benchmarks.md; "" to skip)
#   BENCH_RESULTS      a folder to copy the raw figures into (machine-readable, for bench/all.sh)
#
# This is a benchmark, not a test: nothing here asserts a speed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. bench/lib/common.sh

WARMUP="${BENCH_WARMUP:-1}"
MEASUREMENT="${BENCH_MEASUREMENT:-3}"
DOC="${BENCH_DOC-docs/benchmarks.md}"
SECTION="## session-core"
BENCH_CMD=(cargo bench -p session-core --bench manager -- --warm-up-time "$WARMUP" --measurement-time "$MEASUREMENT")
COMMAND="BENCH_WARMUP=$WARMUP BENCH_MEASUREMENT=$MEASUREMENT bench/core.sh"

for tool in cargo python3; do
  command -v "$tool" >/dev/null || { echo "bench/core.sh: $tool is required" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== building (release)" >&2
cargo bench -p session-core --bench manager --no-run >&2

export CRITERION_HOME="$WORK/criterion"
LOAD_START="$(load_average)"
echo "== ${BENCH_CMD[*]}" >&2
"${BENCH_CMD[@]}" >&2
LOAD_END="$(load_average)"

{
  echo "$SECTION"
  echo
  echo "Measured $(now_utc) with \`$COMMAND\` on $(machine_line). Load average (1/5/15 min) $LOAD_START before, $LOAD_END after."
  echo
  python3 bench/lib/criterion_table.py "$CRITERION_HOME" \
    "manager/access_token warm (memory store)=\`access_token(None)\`, fresh token, warm manager over a memory store" \
    "manager/cold start (vault, key given)=cold start: open a vault store of 1 account (key given) + \`SessionManager::new\` + \`access_token(None)\`" \
    "manager-argon2/cold start (vault, passphrase)=cold start as above, vault key from a passphrase (Argon2id, 19 MiB, 2 passes)"
  echo
  echo "The command runs \`${BENCH_CMD[*]}\` (\`session-core/benches/manager.rs\`). No network is involved: the account (access token expiring in a day, refresh and ID tokens) is saved straight into the store with \`AccountStore::save_account\` and made active, so \`access_token\` finds a fresh token and returns it. Each call reads the account index (\`accounts.json\`) for the active account and the token from the secret store, both on tokio's blocking pool (a multi-thread runtime with 2 workers). A cold start is what one CLI invocation does before any network: a new \`AccountStore\` over a new \`VaultStore\` (the vault file read, decoded and one entry opened), a new \`SessionManager\`, then \`access_token(None)\`; with a passphrase the vault key is derived again each time, since a new process has no cached key (temporary folder on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }'))."
  echo
  echo "Median and its 95 % confidence interval (criterion's bootstrap) over criterion's samples (10 samples for the Argon2id row)."
} >"$WORK/section.md"

echo
cat "$WORK/section.md"
if [ -n "${BENCH_RESULTS:-}" ]; then
  mkdir -p "$BENCH_RESULTS"
  cp "$WORK/section.md" "$BENCH_RESULTS/section.md"
  cp -r "$CRITERION_HOME" "$BENCH_RESULTS/criterion"
fi
echo

if [ -n "$DOC" ]; then
  python3 bench/lib/write_section.py "$DOC" "$SECTION" "$WORK/section.md"
  echo "bench/core.sh: wrote the section into $DOC" >&2
fi
