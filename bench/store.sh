#!/usr/bin/env bash
# account-store: one item read and written per backend, and a vault of 50 accounts.
#
#   bench/store.sh                                  # 1 s warm-up + 3 s measured per benchmark
#   BENCH_MEASUREMENT=10 bench/store.sh             # longer
#
# Runs `cargo bench -p account-store --bench store` (account-store/benches/store.rs, criterion)
# under a private D-Bus session with an unlocked gnome-keyring-daemon (bench/lib/secret-service.sh),
# so the Secret Service rows are real; prints a Markdown table (criterion's median and its 95 %
# confidence interval) and writes it into docs/benchmarks.md, section "## account-store" (other
# sections are left alone).
#
# Environment:
#   BENCH_WARMUP       criterion --warm-up-time, seconds (default 1)
#   BENCH_MEASUREMENT  criterion --measurement-time, seconds (default 3)
#   BENCH_DOC          document to update (default docs/benchmarks.md; "" to skip)
#   BENCH_RESULTS      a folder to copy the raw figures into (machine-readable, for bench/all.sh)
#
# Needs Debian's dbus and gnome-keyring. This is a benchmark, not a test: nothing here asserts a
# speed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. bench/lib/common.sh

WARMUP="${BENCH_WARMUP:-1}"
MEASUREMENT="${BENCH_MEASUREMENT:-3}"
DOC="${BENCH_DOC-docs/benchmarks.md}"
SECTION="## account-store"
BENCH_CMD=(cargo bench -p account-store --bench store -- --warm-up-time "$WARMUP" --measurement-time "$MEASUREMENT")
COMMAND="BENCH_WARMUP=$WARMUP BENCH_MEASUREMENT=$MEASUREMENT bench/store.sh"

for tool in cargo dbus-run-session dbus-send gnome-keyring-daemon python3; do
  command -v "$tool" >/dev/null || { echo "bench/store.sh: $tool is required" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== building (release)" >&2
cargo bench -p account-store --bench store --no-run >&2

export CRITERION_HOME="$WORK/criterion"
LOAD_START="$(load_average)"
echo "== ${BENCH_CMD[*]} (private Secret Service)" >&2
dbus-run-session -- bench/lib/secret-service.sh "${BENCH_CMD[@]}" 2>&1 | tee "$WORK/bench.log" >&2
LOAD_END="$(load_average)"

{
  echo "$SECTION"
  echo
  echo "Measured $(now_utc) with \`$COMMAND\` on $(machine_line). Load average (1/5/15 min) $LOAD_START before, $LOAD_END after."
  echo
  python3 bench/lib/criterion_table.py "$CRITERION_HOME" \
    "memory/read=memory: read one item" \
    "memory/write=memory: write one item" \
    "vault/open+read 1 of 50 accounts (key unlocked)=vault: open + read 1 item of 50 accounts (key given, no Argon2id)" \
    "vault/write (50 accounts present)=vault: write 1 item, 50 accounts present (read, verify all, seal, atomic rename)" \
    "secret-service/open (connect + probe)=Secret Service: open a store (connect to the bus; probe: write, read back and delete an entry)" \
    "secret-service/read=Secret Service (gnome-keyring over D-Bus): read one item" \
    "secret-service/write=Secret Service (gnome-keyring over D-Bus): write one item"
  echo
  echo "The command runs \`${BENCH_CMD[*]}\` (\`account-store/benches/store.rs\`) under \`dbus-run-session\` with a private \`gnome-keyring-daemon --unlock --components=secrets\` and HOME/XDG folders in a temporary directory (\`bench/lib/secret-service.sh\`). Items are 700-byte values. The vault is the profile's AES-256-GCM file: every read reads and decodes the whole file (50 accounts × 5 items here) and opens one entry; every write takes the directory lock, reads the file, authenticates every entry, seals the new one and writes the file atomically (write, fsync, rename, fsync of the folder; temporary folder on $(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }')). Its key is given (as when it is kept in the OS keyring); a passphrase costs one Argon2id derivation per process on top (see \`## session-core\`). The Secret Service rows are D-Bus round trips to gnome-keyring (a write or a delete also makes it save its keyring file); opening a store on it, which every process does once, connects to the bus and checks with a probe entry that the keyring answers and is unlocked."
  echo
  echo "Median and its 95 % confidence interval (criterion's bootstrap) over criterion's samples; one sample is many iterations of the operation."
} >"$WORK/section.md"

echo
cat "$WORK/section.md"
if [ -n "${BENCH_RESULTS:-}" ]; then
  mkdir -p "$BENCH_RESULTS"
  cp "$WORK/section.md" "$BENCH_RESULTS/section.md"
  cp -r "$CRITERION_HOME" "$BENCH_RESULTS/criterion"
fi
echo

if grep -q "no Secret Service: skipping keyring benches" "$WORK/bench.log"; then
  echo "bench/store.sh: no Secret Service answered; not writing ${DOC:-the document}" >&2
  exit 1
fi
if [ -n "$DOC" ]; then
  python3 bench/lib/write_section.py "$DOC" "$SECTION" "$WORK/section.md"
  echo "bench/store.sh: wrote the section into $DOC" >&2
fi
