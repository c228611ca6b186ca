#!/usr/bin/env bash
# Runs a command with a private, unlocked Secret Service: gnome-keyring-daemon (secrets component
# only, its login collection unlocked) on the D-Bus session bus this script is started on, with
# HOME and the XDG folders in a temporary directory so the user's own keyring is never touched.
# As test-harness/src/secret_service.rs does for the tests. Start it under its own bus:
#
#   dbus-run-session -- bench/lib/secret-service.sh COMMAND [ARGS...]
#
# CARGO_HOME and RUSTUP_HOME keep pointing at the real ones, so cargo works inside. Needs
# Debian's dbus and gnome-keyring.
set -euo pipefail

if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  echo "secret-service.sh: no D-Bus session bus; run under dbus-run-session" >&2
  exit 1
fi

export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
SS_DIR="$(mktemp -d)"
export HOME="$SS_DIR/home" XDG_RUNTIME_DIR="$SS_DIR/run" XDG_DATA_HOME="$SS_DIR/data" \
  XDG_CONFIG_HOME="$SS_DIR/config" XDG_CACHE_HOME="$SS_DIR/cache"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME"
chmod 700 "$XDG_RUNTIME_DIR"

printf 'lanyard-bench' | gnome-keyring-daemon --unlock --components=secrets --foreground \
  >"$SS_DIR/gnome-keyring.log" 2>&1 &
GK=$!
cleanup() {
  kill "$GK" 2>/dev/null || true
  wait "$GK" 2>/dev/null || true
  rm -rf "$SS_DIR"
}
trap cleanup EXIT

i=0
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
  org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; do
  i=$((i + 1))
  if [ "$i" -gt 200 ] || ! kill -0 "$GK" 2>/dev/null; then
    echo "secret-service.sh: gnome-keyring-daemon did not register:" >&2
    cat "$SS_DIR/gnome-keyring.log" >&2
    exit 1
  fi
  sleep 0.05
done

"$@"
