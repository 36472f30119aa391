//! A started container whose supervisor is ready for one run, and the run's side of the
//! protocol: the header and stdin written once, then output, markers and trailer read back.

use std::collections::VecDeque;
use std::time::Duration;

use bollard::container::LogOutput;
use futures::StreamExt;

use crate::engine::{AttachInput, AttachOutput, write_and_close};
use crate::error::{Error, Result};
use crate::language::Language;
use crate::protocol::{Event, StdoutScanner, Trailer};

/// Stderr kept from a supervisor that failed before a run, for the error message.
const EARLY_STDERR_LIMIT: usize = 4096;
/// After the trailer the container is exiting, but the engine delivers stdout and stderr as it
/// reads them from two pipes: the program's last stderr may come after the trailer on stdout.
/// Its output is read until the container's streams end, or for this long at most.
const DRAIN_AFTER_TRAILER: Duration = Duration::from_millis(500);

/// What a running container sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The program is starting; CPU time the container used before it.
    Go(Option<Duration>),
    /// Bytes the program wrote on stdout.
    Stdout(Vec<u8>),
    /// Bytes the program (or, before GO, the supervisor) wrote on stderr.
    Stderr(Vec<u8>),
    /// The supervisor's report; nothing follows.
    End(Trailer),
}

/// A container attached to before it started, its supervisor running.
pub struct RunnerContainer {
    /// Container id.
    pub id: String,
    /// The language its runner has started.
    pub language: &'static Language,
    output: AttachOutput,
    input: Option<AttachInput>,
    scanner: StdoutScanner,
    queued: VecDeque<Piece>,
    early_stderr: Vec<u8>,
    /// The supervisor's report, held until the rest of the output has been read.
    trailer: Option<Trailer>,
    ended: bool,
}

impl std::fmt::Debug for RunnerContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerContainer")
            .field("id", &self.id)
            .field("language", &self.language.name)
            .finish_non_exhaustive()
    }
}

impl RunnerContainer {
    /// Wraps the attached streams of a container that has just been started.
    pub fn new(
        id: String,
        language: &'static Language,
        output: AttachOutput,
        input: AttachInput,
    ) -> Self {
        Self {
            id,
            language,
            output,
            input: Some(input),
            scanner: StdoutScanner::new(),
            queued: VecDeque::new(),
            early_stderr: Vec::new(),
            trailer: None,
            ended: false,
        }
    }

    /// Waits for READY: the interpreter is started and waits for its run.
    pub async fn ready(&mut self) -> Result<()> {
        loop {
            let item = self.output.next().await;
            let bytes = match item {
                Some(Ok(LogOutput::StdOut { message })) => message,
                Some(Ok(LogOutput::StdErr { message })) => {
                    self.keep_early_stderr(&message);
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Error::docker("read container output")(e)),
                None => return Err(self.not_started("it exited")),
            };
            let events = self
                .scanner
                .push(&bytes)
                .map_err(|e| self.not_started(&e.to_string()))?;
            if events.contains(&Event::Ready) {
                return Ok(());
            }
        }
    }

    /// Sends the run: `header` (with `nonce` in it), then the program's `stdin`, then end of
    /// input. Written in the background, since a program need not read its stdin.
    pub fn send(&mut self, nonce: &str, header: Vec<u8>, stdin: &[u8]) {
        self.scanner.expect_nonce(nonce);
        let Some(mut input) = self.input.take() else {
            return;
        };
        let mut data = header;
        data.extend_from_slice(stdin);
        tokio::spawn(async move {
            if let Err(e) = write_and_close(&mut input, &data).await {
                tracing::debug!(error = %e, "container stdin closed before the run was written");
            }
        });
    }

    /// Whether the program has started (GO was seen).
    pub fn started(&self) -> bool {
        self.scanner.started()
    }

    /// The next piece of the run; `None` once the container's output has ended. A supervisor
    /// that breaks the protocol ends the run with an error.
    pub async fn next(&mut self) -> Option<Result<Piece>> {
        loop {
            if let Some(piece) = self.queued.pop_front() {
                return Some(Ok(piece));
            }
            if self.ended {
                return None;
            }
            let next = if self.trailer.is_some() {
                tokio::time::timeout(DRAIN_AFTER_TRAILER, self.output.next())
                    .await
                    .unwrap_or(None)
            } else {
                self.output.next().await
            };
            match next {
                Some(Ok(LogOutput::StdOut { message })) => match self.scanner.push(&message) {
                    Ok(events) => {
                        for event in events {
                            match event {
                                Event::Ready => {}
                                Event::Go(cpu) => self.queued.push_back(Piece::Go(cpu)),
                                Event::Output(bytes) => {
                                    self.queued.push_back(Piece::Stdout(bytes));
                                }
                                Event::End(trailer) => self.trailer = Some(trailer),
                            }
                        }
                    }
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(self.not_started(&e.to_string())));
                    }
                },
                Some(Ok(LogOutput::StdErr { message })) => {
                    if !self.started() {
                        self.keep_early_stderr(&message);
                    }
                    self.queued.push_back(Piece::Stderr(message.to_vec()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "sandbox output stream failed");
                    self.finish();
                }
                None => self.finish(),
            }
        }
    }

    /// The stream ended: pass on what the scanner held back, then the trailer when there was one.
    fn finish(&mut self) {
        let rest = self.scanner.finish();
        if !rest.is_empty() {
            self.queued.push_back(Piece::Stdout(rest));
        }
        if let Some(trailer) = self.trailer.take() {
            self.queued.push_back(Piece::End(trailer));
        }
        self.ended = true;
    }

    fn keep_early_stderr(&mut self, bytes: &[u8]) {
        let room = EARLY_STDERR_LIMIT.saturating_sub(self.early_stderr.len());
        self.early_stderr
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The error of a container whose program never started.
    pub fn not_started(&self, why: &str) -> Error {
        let stderr = String::from_utf8_lossy(&self.early_stderr);
        Error::Unavailable(format!(
            "the {} runner of container {} failed before the program started ({why}){}{}",
            self.language.name,
            &self.id[..self.id.len().min(12)],
            if stderr.is_empty() { "" } else { ": " },
            stderr.trim()
        ))
    }
}
