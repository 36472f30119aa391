//! The sandbox: admission (bounded queue), one container per run from the warm pool or fresh,
//! the run itself under the wall-clock and output limits, counters, and removal afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use autocrea_proto::sandbox::v1 as pb;
use bollard::container::LogOutput;
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive;
use crate::config::Config;
use crate::engine::{CgroupStats, ContainerEngine};
use crate::error::{Error, Result};
use crate::language::LANGUAGES;
use crate::output::{Capture, Stream, signal_name};
use crate::pool::WarmPool;
use crate::request::RunSpec;

/// How long output may keep flowing after the program exited (a background child can hold the
/// pipes open forever; its output after that is dropped with the container).
const EXIT_GRACE: Duration = Duration::from_millis(100);
/// How often a running program is checked for having exited while its pipes stay open.
const EXIT_POLL: Duration = Duration::from_millis(200);
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
    Exited,
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
                    let _ = self
                        .pool
                        .set(WarmPool::start(engine.clone(), self.config.pool_size));
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
        self.runs.spawn(async move {
            let _ticket = ticket;
            let Ok(_slot) = this.slots.clone().acquire_owned().await else {
                let _ = tx.send(RunEvent::Failed(Error::ShuttingDown)).await;
                return;
            };
            this.run(engine, spec, version, stream, tx).await;
        });
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

    /// A container for one run and whether it came from the warm pool.
    async fn acquire_container(&self, engine: &ContainerEngine) -> Result<(String, bool)> {
        if let Some(id) = self.pool.get().and_then(WarmPool::take) {
            return Ok((id, true));
        }
        Ok((engine.create_started().await?, false))
    }

    async fn run(
        &self,
        engine: ContainerEngine,
        spec: RunSpec,
        version: String,
        stream: bool,
        tx: mpsc::Sender<RunEvent>,
    ) {
        let (mut container, pooled) = match self.acquire_container(&engine).await {
            Ok(acquired) => acquired,
            Err(e) => {
                let _ = tx.send(RunEvent::Failed(e)).await;
                return;
            }
        };
        let mut result = self
            .run_in(&engine, &container, &spec, version.clone(), stream, &tx)
            .await;
        // An idle container can die while it waits (engine restart, external kill); the program
        // did not start then (run_in fails only before it does), so it gets a fresh container.
        if pooled && result.is_err() {
            tracing::warn!("a warm container could not start the program; using a fresh one");
            engine.remove(&container).await;
            match engine.create_started().await {
                Ok(id) => {
                    container = id;
                    result = self
                        .run_in(&engine, &container, &spec, version, stream, &tx)
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

    /// Runs the program in `container`. Errors happen only before the program starts; once it
    /// has, everything (exit, crash, time, output) is a result.
    async fn run_in(
        &self,
        engine: &ContainerEngine,
        container: &str,
        spec: &RunSpec,
        version: String,
        stream: bool,
        tx: &mpsc::Sender<RunEvent>,
    ) -> Result<pb::ExecuteResponse> {
        let files: Vec<_> = spec
            .files
            .iter()
            .map(|f| (&f.name, f.content.as_bytes()))
            .collect();
        let archive = archive::build(files, spec.stdin.as_bytes());
        let mut cmd = vec![
            spec.language.interpreter.to_string(),
            spec.entry.as_str().to_string(),
        ];
        cmd.extend(spec.args.iter().cloned());

        let started = Instant::now();
        let (exec_id, mut output) = engine.start_program(container, &archive, cmd).await?;
        let deadline = started + spec.timeout;
        let mut capture = Capture::new(self.config.limits.output_bytes);
        let mut poll = tokio::time::interval_at(started + EXIT_POLL, EXIT_POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut exited_at: Option<Instant> = None;

        let end = loop {
            let grace_end = exited_at.map_or(deadline, |t| (t + EXIT_GRACE).min(deadline));
            tokio::select! {
                item = output.next() => {
                    let (kind, message) = match item {
                        Some(Ok(LogOutput::StdOut { message })) => (Stream::Stdout, message),
                        Some(Ok(LogOutput::StdErr { message })) => (Stream::Stderr, message),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "sandbox output stream failed");
                            break End::Exited;
                        }
                        None => break End::Exited,
                    };
                    let text = capture.push(kind, &message);
                    if stream && !text.is_empty() {
                        let event = match kind {
                            Stream::Stdout => RunEvent::Stdout(text),
                            Stream::Stderr => RunEvent::Stderr(text),
                        };
                        match tokio::time::timeout_at(deadline, tx.send(event)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break End::ClientGone,
                            Err(_) => break End::TimedOut,
                        }
                    }
                    if capture.truncated() {
                        break End::Truncated;
                    }
                }
                () = tokio::time::sleep_until(deadline) => break End::TimedOut,
                () = tokio::time::sleep_until(grace_end), if exited_at.is_some() => break End::Exited,
                _ = poll.tick(), if exited_at.is_none() => {
                    if let Ok((false, _)) = engine.exec_state(&exec_id).await {
                        exited_at = Some(Instant::now());
                    }
                }
                () = tx.closed() => break End::ClientGone,
            }
        };
        let duration = exited_at.unwrap_or_else(Instant::now) - started;
        drop(output);

        let exit_code = match end {
            End::Exited => self.exit_code(engine, &exec_id).await,
            // The service stops these runs by killing the container.
            End::TimedOut | End::Truncated | End::ClientGone => 128 + 9,
        };
        let ended = started.elapsed();
        let stats = if end == End::ClientGone {
            CgroupStats::default()
        } else {
            engine.stats(container).await
        };
        tracing::debug!(
            ?end,
            program_ms = millis(duration),
            ended_ms = millis(ended),
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
            timed_out: end == End::TimedOut,
            oom_killed: stats.oom_kills > 0,
            truncated: end == End::Truncated,
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

    /// The exit code of a finished exec. The engine may close the output a moment before it
    /// records the exit, so it is asked a few times.
    async fn exit_code(&self, engine: &ContainerEngine, exec_id: &str) -> i64 {
        for _ in 0..50 {
            match engine.exec_state(exec_id).await {
                Ok((false, Some(code))) => return code,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the exit code of a run");
                    return -1;
                }
            }
        }
        -1
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
