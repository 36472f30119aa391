//! The sandbox: admission (bounded queue), one container per run from the language's warm pool
//! or fresh, the run itself under the wall-clock and output limits, counters, and removal
//! afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use autocrea_proto::sandbox::v1 as pb;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::engine::{CgroupStats, ContainerEngine};
use crate::error::{Error, Result};
use crate::language::{LANGUAGES, Language};
use crate::output::{Capture, Stream, signal_name};
use crate::pool::{READY_TIMEOUT, WarmPool};
use crate::protocol::{self, Trailer};
use crate::request::RunSpec;
use crate::runner::{Piece, RunnerContainer};

/// Events buffered for a slow streaming client before the run waits for it.
const EVENT_BUFFER: usize = 64;

/// What a run reports while it goes.
#[derive(Debug)]
pub enum RunEvent {
    /// Text printed on stdout (streaming runs only).
    Stdout(String),
    /// Text printed on stderr (streaming runs only).
    Stderr(String),
    /// The result; the last event.
    Done(pb::ExecuteResponse),
    /// The run could not happen; the last event.
    Failed(Error),
}

/// Whether the Docker engine and the runtime image can be used.
#[derive(Debug, Clone)]
enum Availability {
    Ready {
        versions: HashMap<&'static str, String>,
    },
    Unavailable(String),
}

/// The sandbox of one service instance.
#[derive(Debug)]
pub struct Sandbox {
    config: Arc<Config>,
    engine: std::result::Result<ContainerEngine, String>,
    availability: RwLock<Availability>,
    pool: OnceLock<WarmPool>,
    slots: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    runs: TaskTracker,
    stopping: CancellationToken,
}

/// A place in the queue; dropping it frees the place.
#[derive(Debug)]
struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How the program's run ended, as far as the service saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The supervisor reported the end of the program.
    Reported(Trailer),
    /// The container's output ended without a report (the program killed its supervisor).
    Exited,
    /// The service stopped the run.
    Stopped(Stop),
}

/// Why the service stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Truncated,
    ClientGone,
}

impl Sandbox {
    /// A sandbox for `config`; nothing is contacted until [`Sandbox::probe`].
    pub fn new(config: Config) -> Arc<Self> {
        let config = Arc::new(config);
        let engine = ContainerEngine::connect(config.clone());
        let initial = match &engine {
            Ok(_) => "the Docker engine has not been checked yet".to_string(),
            Err(reason) => reason.clone(),
        };
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent_runs)),
            admitted: Arc::new(AtomicUsize::new(0)),
            availability: RwLock::new(Availability::Unavailable(initial)),
            pool: OnceLock::new(),
            runs: TaskTracker::new(),
            stopping: CancellationToken::new(),
            engine,
            config,
        })
    }

    /// Checks the engine and image. The first success also removes the containers a previous
    /// run of this instance left behind and starts the warm pool. Returns the reason when the
    /// sandbox cannot run code.
    pub async fn probe(&self) -> std::result::Result<(), String> {
        let engine = self.engine.as_ref().map_err(Clone::clone)?;
        let outcome = match engine.probe().await {
            Ok(labels) => {
                if self.pool.get().is_none() {
                    match engine.sweep().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "removed orphaned sandbox containers"),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot sweep orphaned sandbox containers")
                        }
                    }
                    let config = self.config.clone();
                    let _ = self.pool.set(WarmPool::start(engine.clone(), move |l| {
                        config.pool_size_for(l)
                    }));
                }
                let versions = LANGUAGES
                    .iter()
                    .map(|l| {
                        let version = labels
                            .get(l.version_label)
                            .cloned()
                            .unwrap_or_else(|| "unknown".to_string());
                        (l.name, version)
                    })
                    .collect();
                Availability::Ready { versions }
            }
            Err(reason) => Availability::Unavailable(reason),
        };
        let result = match &outcome {
            Availability::Ready { .. } => Ok(()),
            Availability::Unavailable(reason) => Err(reason.clone()),
        };
        *self.availability.write().unwrap_or_else(|e| e.into_inner()) = outcome;
        result
    }

    /// The languages and their versions (`unknown` until the image has been inspected).
    pub fn languages(&self) -> Vec<pb::Language> {
        let versions = match &*self.availability.read().unwrap_or_else(|e| e.into_inner()) {
            Availability::Ready { versions } => versions.clone(),
            Availability::Unavailable(_) => HashMap::new(),
        };
        LANGUAGES
            .iter()
            .map(|l| pb::Language {
                language: l.name.to_string(),
                version: versions
                    .get(l.name)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
                aliases: l.aliases.iter().map(|a| a.to_string()).collect(),
                default_entry: l.default_entry.to_string(),
            })
            .collect()
    }

    /// Idle containers ready in the warm pool.
    pub fn pool_ready(&self) -> usize {
        self.pool.get().map_or(0, WarmPool::ready)
    }

    /// Warm containers the pool keeps when it keeps up: the configured size of every language's.
    pub fn pool_target(&self) -> usize {
        crate::language::LANGUAGES
            .iter()
            .map(|language| self.config.pool_size_for(language))
            .sum()
    }

    /// Admits `spec` and starts it in the background; events arrive on the returned channel.
    /// Output chunks are sent only when `stream` is set. A run continues to its end (and its
    /// container is removed) even when the receiver goes away; it is then stopped early.
    pub fn start(
        self: &Arc<Self>,
        spec: RunSpec,
        stream: bool,
    ) -> Result<mpsc::Receiver<RunEvent>> {
        if self.stopping.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let (engine, version) = {
            let availability = self.availability.read().unwrap_or_else(|e| e.into_inner());
            match (&*availability, &self.engine) {
                (Availability::Ready { versions }, Ok(engine)) => (
                    engine.clone(),
                    versions
                        .get(spec.language.name)
                        .cloned()
                        .unwrap_or_default(),
                ),
                (Availability::Unavailable(reason), _) => {
                    return Err(Error::Unavailable(reason.clone()));
                }
                (Availability::Ready { .. }, Err(reason)) => {
                    return Err(Error::Unavailable(reason.clone()));
                }
            }
        };
        let capacity = self.config.max_concurrent_runs + self.config.queue_limit;
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Busy {
                running: self.config.max_concurrent_runs,
                queued: self.config.queue_limit,
            });
        }
        let ticket = Ticket(self.admitted.clone());
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let this = self.clone();
        // A child of the caller's request span: every engine call of the run appears under it.
        let span = tracing::info_span!(
            "sandbox.run",
            language = spec.language.name,
            pooled = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        self.runs.spawn(
            async move {
                let _ticket = ticket;
                let Ok(_slot) = this.slots.clone().acquire_owned().await else {
                    let _ = tx.send(RunEvent::Failed(Error::ShuttingDown)).await;
                    return;
                };
                this.run(engine, spec, version, stream, tx).await;
            }
            .instrument(span),
        );
        Ok(rx)
    }

    /// Stops admitting runs, waits for the running ones and their cleanup, stops the pool and
    /// removes every container of this instance.
    pub async fn shutdown(&self) {
        self.stopping.cancel();
        self.runs.close();
        self.runs.wait().await;
        if let Some(pool) = self.pool.get() {
            pool.stop().await;
        }
        if let Ok(engine) = &self.engine {
            match engine.sweep().await {
                Ok(n) => tracing::info!(removed = n, "sandbox containers removed at shutdown"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove sandbox containers at shutdown")
                }
            }
        }
    }

    /// A container for one run of `language` and whether it came from the warm pool.
    async fn acquire_container(
        &self,
        engine: &ContainerEngine,
        language: &'static Language,
    ) -> Result<(RunnerContainer, bool)> {
        if let Some(runner) = self.pool.get().and_then(|p| p.take(language)) {
            return Ok((runner, true));
        }
        Ok((engine.start_runner(language, READY_TIMEOUT).await?, false))
    }

    async fn run(
        &self,
        engine: ContainerEngine,
        spec: RunSpec,
        version: String,
        stream: bool,
        tx: mpsc::Sender<RunEvent>,
    ) {
        let (mut runner, pooled) = match self.acquire_container(&engine, spec.language).await {
            Ok(acquired) => acquired,
            Err(e) => {
                let _ = tx.send(RunEvent::Failed(e)).await;
                return;
            }
        };
        tracing::Span::current().record("pooled", pooled);
        let mut container = runner.id.clone();
        let mut result = self
            .run_in(&engine, runner, &spec, version.clone(), stream, &tx)
            .await;
        // An idle container can die while it waits (engine restart, external kill); the program
        // did not start then (run_in fails only before it does), so it gets a fresh container.
        if pooled && result.is_err() {
            tracing::warn!("a warm container could not start the program; using a fresh one");
            engine.remove(&container).await;
            match engine.start_runner(spec.language, READY_TIMEOUT).await {
                Ok(fresh) => {
                    runner = fresh;
                    container = runner.id.clone();
                    result = self
                        .run_in(&engine, runner, &spec, version, stream, &tx)
                        .await;
                }
                Err(e) => {
                    let _ = tx.send(RunEvent::Failed(e)).await;
                    return;
                }
            }
        }
        let (outcome, duration) = match &result {
            Ok(r) if r.timed_out => ("timeout", Some(r.duration_ms)),
            Ok(r) if r.oom_killed => ("oom", Some(r.duration_ms)),
            Ok(r) if r.truncated => ("truncated", Some(r.duration_ms)),
            Ok(r) if r.exit_code == 0 => ("ok", Some(r.duration_ms)),
            Ok(r) => ("exit_nonzero", Some(r.duration_ms)),
            Err(_) => ("failed", None),
        };
        tracing::Span::current().record("outcome", outcome);
        crate::metrics::record_run(
            spec.language.name,
            outcome,
            duration.map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        );
        // Whatever happened, the container goes; the run's slot is held until it has.
        match result {
            Ok(response) => {
                let _ = tx.send(RunEvent::Done(response)).await;
            }
            Err(e) => {
                let _ = tx.send(RunEvent::Failed(e)).await;
            }
        }
        engine.remove(&container).await;
    }

    /// Runs the program in `runner`'s container. Errors happen only before the program starts;
    /// once it has, everything (exit, crash, time, output) is a result.
    async fn run_in(
        &self,
        engine: &ContainerEngine,
        mut runner: RunnerContainer,
        spec: &RunSpec,
        version: String,
        stream: bool,
        tx: &mpsc::Sender<RunEvent>,
    ) -> Result<pb::ExecuteResponse> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let started = Instant::now();
        runner.send(
            &nonce,
            protocol::encode_run(&nonce, spec),
            spec.stdin.as_bytes(),
        );
        let deadline = started + spec.timeout;
        let mut capture = Capture::new(self.config.limits.output_bytes);
        let mut cpu_before: Option<Duration> = None;

        let end = loop {
            tokio::select! {
                piece = runner.next() => {
                    let (kind, bytes) = match piece {
                        Some(Ok(Piece::Go(cpu))) => {
                            cpu_before = cpu;
                            continue;
                        }
                        Some(Ok(Piece::Stdout(bytes))) => (Stream::Stdout, bytes),
                        Some(Ok(Piece::Stderr(bytes))) => (Stream::Stderr, bytes),
                        Some(Ok(Piece::End(trailer))) => break End::Reported(trailer),
                        Some(Err(e)) => return Err(e),
                        None if runner.started() => break End::Exited,
                        None => return Err(runner.not_started("it exited")),
                    };
                    let text = capture.push(kind, &bytes);
                    if stream && !text.is_empty() {
                        let event = match kind {
                            Stream::Stdout => RunEvent::Stdout(text),
                            Stream::Stderr => RunEvent::Stderr(text),
                        };
                        match tokio::time::timeout_at(deadline, tx.send(event)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break End::Stopped(Stop::ClientGone),
                            Err(_) => break End::Stopped(Stop::TimedOut),
                        }
                    }
                    if capture.truncated() {
                        break End::Stopped(Stop::Truncated);
                    }
                }
                () = tokio::time::sleep_until(deadline) => break End::Stopped(Stop::TimedOut),
                () = tx.closed() => break End::Stopped(Stop::ClientGone),
            }
        };
        let elapsed = started.elapsed();
        let container = runner.id.clone();
        // Dropping the streams closes the attach connection.
        drop(runner);

        let (exit_code, duration, stats) = match end {
            End::Reported(trailer) => (
                trailer.exit_code,
                trailer.duration.unwrap_or(elapsed),
                CgroupStats {
                    cpu: trailer.cpu,
                    memory_peak_bytes: trailer.memory_peak_bytes,
                    oom_kills: trailer.oom_kills,
                },
            ),
            // The program killed its supervisor: the engine knows the exit code, not the counters.
            End::Exited => {
                let code = engine.wait_exit(&container).await.unwrap_or(-1);
                let oom_kills = u64::from(engine.oom_killed(&container).await);
                let stats = CgroupStats {
                    oom_kills,
                    ..CgroupStats::default()
                };
                (code, elapsed, stats)
            }
            // The service stops these runs by killing the container, counters read just before.
            End::Stopped(stop) => {
                let mut stats = if stop == Stop::ClientGone {
                    CgroupStats::default()
                } else {
                    engine.stats(&container).await
                };
                engine.kill(&container).await;
                if let (Some(total), Some(before)) = (stats.cpu, cpu_before) {
                    stats.cpu = Some(total.saturating_sub(before));
                }
                (128 + 9, elapsed, stats)
            }
        };
        tracing::debug!(
            ?end,
            program_ms = millis(duration),
            total_ms = millis(started.elapsed()),
            "run finished"
        );
        let (stdout, stderr) = capture.into_text();
        let limits = &self.config.limits;
        Ok(pb::ExecuteResponse {
            stdout,
            stderr,
            exit_code: i32::try_from(exit_code).unwrap_or(-1),
            signal: signal_name(exit_code).map(str::to_string),
            timed_out: end == End::Stopped(Stop::TimedOut),
            oom_killed: stats.oom_kills > 0,
            truncated: end == End::Stopped(Stop::Truncated),
            duration_ms: millis(duration),
            cpu_time_ms: stats.cpu.map(millis),
            peak_memory_bytes: stats.memory_peak_bytes,
            limits: Some(pb::Limits {
                timeout_ms: millis(spec.timeout),
                memory_bytes: limits.memory_bytes,
                cpu_millis: limits.nano_cpus / 1_000_000,
                pids: limits.pids,
                output_bytes: i64::try_from(limits.output_bytes).unwrap_or(i64::MAX),
                tmpfs_bytes: limits.tmpfs_bytes,
                file_size_bytes: limits.file_size_bytes,
                open_files: limits.open_files,
                network: false,
            }),
            language: spec.language.name.to_string(),
            version,
        })
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
