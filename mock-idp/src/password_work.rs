//! Password hashing and verification on a small pool of threads of their own, as many as the
//! machine has cores.
//!
//! Each Argon2id computation takes 19 MiB (the crate's default cost) for tens of milliseconds.
//! On `web::block` every one ran on whichever thread of tokio's blocking pool was free — a pool
//! that grows to 512 threads — and glibc keeps, per thread, the arena that once held those
//! 19 MiB: the soak (bench/soak.sh: 1,000 sessions opened 256 at a time, then 30 sign-ins a
//! second) took mock-idp from 60 MiB to 1.1 GiB in two minutes, with no grant record left
//! behind. A semaphore in front of `web::block` did not help (the work still wandered over the
//! pool's threads). On a fixed set of threads the memory is a few computations' worth, the work
//! uses the cores it would have used anyway, and a flood of sign-in attempts waits in line
//! instead of taking the machine. (A general thread-pool crate would do; this is the whole of it.)

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The pool's threads are gone (they never stop while the process runs).
#[derive(Debug, thiserror::Error)]
#[error("the password threads are unavailable")]
pub struct PoolGone;

fn queue() -> &'static Mutex<mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        for n in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password thread");
            }
        }
        Mutex::new(tx)
    })
}

/// Runs `work` (a password hash or verification) on the password threads.
pub async fn run<T, F>(work: F) -> Result<T, PoolGone>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        // The request went away while queued (a client that gave up): nothing to compute.
        if tx.is_closed() {
            return;
        }
        // A panic fails this request only; the thread stays for the next one.
        if let Ok(out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            let _ = tx.send(out);
        }
    });
    queue()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(job)
        .map_err(|_| PoolGone)?;
    rx.await.map_err(|_| PoolGone)
}
