//! Crash-safe file writes and cross-process locking.
//!
//! Writes go to a temporary file in the same directory, are fsynced, renamed over the target and
//! the directory is fsynced: a reader (or a process killed mid-write) sees the old or the new
//! content, never a mix. Writers serialise on an advisory lock file (std's `File::lock`, the
//! flock/LockFileEx primitive that `fs4` wraps, stable since Rust 1.89).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::error::StoreError;

/// Writes `bytes` to `path` atomically, with mode 0600 on Unix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    ));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        // Errors name the file being written: the temporary one is removed below.
        let mut f = opts.open(&tmp).map_err(|e| StoreError::writing(path, e))?;
        f.write_all(bytes)
            .map_err(|e| StoreError::writing(path, e))?;
        f.sync_all().map_err(|e| StoreError::writing(path, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads a file, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// An exclusive advisory lock, released on drop.
pub struct DirLock {
    _file: File,
    #[allow(dead_code)]
    path: PathBuf,
}

impl DirLock {
    /// Blocks until the lock file `path` is held exclusively.
    pub fn exclusive(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        file.lock().map_err(|e| StoreError::io(path, e))?;
        Ok(Self {
            _file: file,
            path: path.to_owned(),
        })
    }
}

/// Creates `dir` (and parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| StoreError::io(dir, e))
}
