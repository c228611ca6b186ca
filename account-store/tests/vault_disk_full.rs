#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The vault on a full disk (a real, small tmpfs): a write is refused with an error that says
//! the disk is full and names the vault, the vault on disk is the one before the write and opens
//! with every secret it held, no temporary file is left behind, and once space is freed the same
//! write succeeds.
//!
//! Mounting needs root: as root (CI) the tmpfs is mounted directly; otherwise the test runs
//! itself again inside a new user and mount namespace (`unshare --user --map-root-user
//! --mount`), where an unprivileged user may mount a tmpfs.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use account_store::{ItemKind, SecretStore, StoreError};
use common::*;
use secrecy::ExposeSecret;

const IN_NAMESPACE: &str = "LANYARD_TEST_IN_MOUNT_NAMESPACE";

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `body` with a mounted tmpfs of `size`: here when root (or already inside the
/// namespace), else in this test run again under `unshare`.
fn with_tmpfs(test: &str, size: &str, body: impl FnOnce(&Path)) {
    if is_root() || std::env::var_os(IN_NAMESPACE).is_some() {
        let fs = Tmpfs::mount(size);
        body(fs.path());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .output()
        .expect("unshare runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the test inside `unshare --user --map-root-user --mount` failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fills the file system holding `dir` until a write fails for want of space.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write_all(&chunk).and_then(|()| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return path,
            Err(e) => panic!("filling the tmpfs failed otherwise: {e}"),
        }
    }
}

#[test]
fn a_write_to_a_full_disk_is_refused_by_name_and_the_old_vault_stays_intact() {
    with_tmpfs(
        "a_write_to_a_full_disk_is_refused_by_name_and_the_old_vault_stays_intact",
        "256k",
        |dir| {
            let v = vault(dir, PASSPHRASE);
            v.set(&key("alice"), ItemKind::RefreshToken, &secret("rt-alice"))
                .unwrap();
            v.set(&key("carol"), ItemKind::AccessToken, &secret("at-carol"))
                .unwrap();
            let before = std::fs::read(dir.join("vault.bin")).unwrap();
            let filler = fill(dir);

            let err = v
                .set(&key("bob"), ItemKind::RefreshToken, &secret("rt-bob"))
                .expect_err("a write to a full disk fails");
            assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.contains("no space left"), "{message}");
            assert!(
                message.contains(&dir.join("vault.bin").display().to_string()),
                "the error names the vault: {message}"
            );
            assert!(message.contains("intact"), "{message}");
            assert!(!message.contains("rt-bob"), "no secret in the error");

            // The vault is byte for byte the one before, and opens with what it held.
            assert_eq!(std::fs::read(dir.join("vault.bin")).unwrap(), before);
            let reopened = vault(dir, PASSPHRASE);
            assert_eq!(
                reopened
                    .require(&key("alice"), ItemKind::RefreshToken)
                    .unwrap()
                    .expose_secret(),
                "rt-alice"
            );
            assert_eq!(
                reopened
                    .require(&key("carol"), ItemKind::AccessToken)
                    .unwrap()
                    .expose_secret(),
                "at-carol"
            );
            assert!(reopened
                .get(&key("bob"), ItemKind::RefreshToken)
                .unwrap()
                .is_none());
            let mut left: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "filler")
                .collect();
            left.sort();
            assert!(
                left.iter().all(|n| !n.contains(".tmp-")),
                "no temporary file is left: {left:?}"
            );

            // Space freed: the same write goes through.
            std::fs::remove_file(filler).unwrap();
            reopened
                .set(&key("bob"), ItemKind::RefreshToken, &secret("rt-bob"))
                .unwrap();
            assert_eq!(
                vault(dir, PASSPHRASE)
                    .require(&key("bob"), ItemKind::RefreshToken)
                    .unwrap()
                    .expose_secret(),
                "rt-bob"
            );
        },
    );
}
