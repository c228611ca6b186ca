//! A real Secret Service for tests: a private D-Bus session bus with `gnome-keyring-daemon`
//! (its login collection unlocked) on it. One per test process, started on first use; the
//! daemons stop when the test process exits (a small supervisor watches its parent).
//!
//! Needs Debian's `dbus` and `gnome-keyring` (`.ci/run` installs them).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const SUPERVISOR: &str = r#"
set -eu
dir=$1; parent=$2
export XDG_RUNTIME_DIR="$dir/run" HOME="$dir/home" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config"
mkdir -p "$XDG_RUNTIME_DIR" "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME"
chmod 700 "$XDG_RUNTIME_DIR"
dbus-daemon --session --nofork --nopidfile --address="unix:path=$dir/bus" >/dev/null 2>&1 &
dbus=$!
i=0; while [ ! -S "$dir/bus" ]; do i=$((i+1)); [ $i -gt 200 ] && { echo "dbus-daemon did not start"; exit 1; }; sleep 0.05; done
export DBUS_SESSION_BUS_ADDRESS="unix:path=$dir/bus"
printf 'lanyard-test' | gnome-keyring-daemon --unlock --components=secrets --foreground >"$dir/gnome-keyring.log" 2>&1 &
gk=$!
i=0
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; do
  i=$((i+1)); [ $i -gt 200 ] && { echo "gnome-keyring-daemon did not register"; exit 1; }; sleep 0.05
done
echo "ready $DBUS_SESSION_BUS_ADDRESS"
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
kill "$gk" "$dbus" 2>/dev/null || true
rm -rf "$dir"
"#;

/// The running Secret Service of this test process.
pub struct SecretService {
    /// `DBUS_SESSION_BUS_ADDRESS` of the private bus.
    pub bus_address: String,
}

static SHARED: OnceLock<SecretService> = OnceLock::new();

impl SecretService {
    /// Locks the login collection (it cannot be unlocked again headless: use this only in a
    /// test binary of its own).
    pub fn lock_login_collection(&self) {
        let status = Command::new("dbus-send")
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("dbus-send runs");
        assert!(status.success(), "locking the login collection failed");
    }
}

impl SecretService {
    /// The file gnome-keyring keeps the login collection in; it is rewritten whenever an item
    /// is created, changed or deleted, so its modification time shows whether anything wrote.
    pub fn login_keyring_file(&self) -> std::path::PathBuf {
        let bus = self
            .bus_address
            .strip_prefix("unix:path=")
            .unwrap_or(&self.bus_address);
        std::path::Path::new(bus)
            .parent()
            .unwrap_or(std::path::Path::new("/"))
            .join("data/keyrings/login.keyring")
    }

    /// Starts the service on first call and points this process's `DBUS_SESSION_BUS_ADDRESS` at
    /// it; later calls return the same one. Panics with the packages to install if it cannot.
    pub fn shared() -> &'static SecretService {
        SHARED.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("lanyard-ss-{}-{}", std::process::id(), rand::random::<u32>()));
            std::fs::create_dir_all(&dir).expect("temp dir for the Secret Service");
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(SUPERVISOR)
                .arg("lanyard-secret-service")
                .arg(&dir)
                .arg(std::process::id().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("sh runs");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).expect("supervisor output");
            let Some(address) = line.trim().strip_prefix("ready ") else {
                panic!(
                    "could not start a Secret Service ({}); install Debian's dbus and gnome-keyring",
                    line.trim()
                );
            };
            // Dropping `Child` neither waits nor kills: the supervisor stops itself when this
            // process exits.
            drop(child);
            std::env::set_var("DBUS_SESSION_BUS_ADDRESS", address);
            SecretService {
                bus_address: address.to_owned(),
            }
        })
    }
}
