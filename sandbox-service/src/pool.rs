//! Warm pool: started, idle containers waiting for a run, so a run pays only for an exec. Each
//! container serves exactly one run and is then destroyed; a background task refills the pool.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::ContainerEngine;

/// Idle containers of the runtime image, at most `size` of them.
#[derive(Debug)]
pub struct WarmPool {
    ready: Mutex<Option<mpsc::Receiver<String>>>,
    filler: Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
}

impl WarmPool {
    /// A pool that never holds anything (size 0).
    pub fn disabled() -> Self {
        Self {
            ready: Mutex::new(None),
            filler: Mutex::new(None),
            stop: CancellationToken::new(),
        }
    }

    /// A pool of `size` containers, filled by a background task until [`WarmPool::stop`].
    pub fn start(engine: ContainerEngine, size: usize) -> Self {
        if size == 0 {
            return Self::disabled();
        }
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(size);
        let filler = tokio::spawn(fill(engine, tx, stop.clone()));
        Self {
            ready: Mutex::new(Some(rx)),
            filler: Mutex::new(Some(filler)),
            stop,
        }
    }

    /// Stops refilling and waits for the filler to finish; the idle containers stay for the
    /// caller's sweep to remove.
    pub async fn stop(&self) {
        self.stop.cancel();
        let filler = self.filler.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(filler) = filler {
            let _ = filler.await;
        }
    }

    /// An idle container, if one is ready; the pool refills itself.
    pub fn take(&self) -> Option<String> {
        let mut guard = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().and_then(|rx| rx.try_recv().ok())
    }

    /// How many containers are ready now.
    pub fn ready(&self) -> usize {
        let guard = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map_or(0, mpsc::Receiver::len)
    }
}

async fn fill(engine: ContainerEngine, tx: mpsc::Sender<String>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    loop {
        // Reserve a slot first, so the pool never holds more than its size.
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = tx.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        // Not cancelled midway: a container the engine is creating must be known, to be removed.
        let created = engine.create_started().await;
        if stop.is_cancelled() {
            if let Ok(id) = created {
                engine.remove(&id).await;
            }
            return;
        }
        match created {
            Ok(id) => {
                backoff = Duration::from_millis(200);
                permit.send(id);
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "cannot create a warm sandbox container; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
