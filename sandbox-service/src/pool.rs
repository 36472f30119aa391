//! Warm pools, one per language: started containers whose supervisor has its interpreter
//! running and waits for a run, so a run pays only for writing its code and running it. Each
//! container serves exactly one run and is then destroyed; a background task per language
//! refills its pool. When a burst empties a pool, runs create their container on the spot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::ContainerEngine;
use crate::language::{LANGUAGES, Language};
use crate::runner::RunnerContainer;

/// How long a new container may take to have its interpreter ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle containers per language, at most the configured size of each.
#[derive(Debug)]
pub struct WarmPool {
    ready: Mutex<HashMap<&'static str, mpsc::Receiver<RunnerContainer>>>,
    fillers: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
}

impl WarmPool {
    /// A pool that never holds anything.
    pub fn disabled() -> Self {
        Self {
            ready: Mutex::new(HashMap::new()),
            fillers: Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
        }
    }

    /// Pools of `size(language)` containers each, filled by background tasks until
    /// [`WarmPool::stop`].
    pub fn start(engine: ContainerEngine, size: impl Fn(&Language) -> usize) -> Self {
        let pool = Self::disabled();
        let mut ready = HashMap::new();
        let mut fillers = Vec::new();
        for language in LANGUAGES {
            let n = size(language);
            if n == 0 {
                continue;
            }
            let (tx, rx) = mpsc::channel(n);
            ready.insert(language.name, rx);
            let span = tracing::info_span!("sandbox.pool_fill", language = language.name);
            fillers.push(tokio::spawn(
                fill(engine.clone(), language, tx, pool.stop.clone()).instrument(span),
            ));
        }
        *pool.ready.lock().unwrap_or_else(|e| e.into_inner()) = ready;
        *pool.fillers.lock().unwrap_or_else(|e| e.into_inner()) = fillers;
        pool
    }

    /// Stops refilling and waits for the fillers; the idle containers are dropped (their
    /// supervisors see stdin close and exit) and left for the caller's sweep to remove.
    pub async fn stop(&self) {
        self.stop.cancel();
        let fillers = std::mem::take(&mut *self.fillers.lock().unwrap_or_else(|e| e.into_inner()));
        for filler in fillers {
            let _ = filler.await;
        }
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// An idle container for `language`, if one is ready; the pool refills itself.
    pub fn take(&self, language: &Language) -> Option<RunnerContainer> {
        let mut guard = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .get_mut(language.name)
            .and_then(|rx| rx.try_recv().ok())
    }

    /// How many containers are ready now, over all languages.
    pub fn ready(&self) -> usize {
        let guard = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        guard.values().map(mpsc::Receiver::len).sum()
    }
}

async fn fill(
    engine: ContainerEngine,
    language: &'static Language,
    tx: mpsc::Sender<RunnerContainer>,
    stop: CancellationToken,
) {
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
        let started = engine.start_runner(language, READY_TIMEOUT).await;
        if stop.is_cancelled() {
            if let Ok(runner) = started {
                engine.remove(&runner.id).await;
            }
            return;
        }
        match started {
            Ok(runner) => {
                backoff = Duration::from_millis(200);
                permit.send(runner);
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "cannot start a warm sandbox container; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
