//! The protocol between the service and the supervisor of a container
//! (`deploy/sandbox/supervisor.py`, which describes it in full): the run written on stdin, and the
//! markers the supervisor prints on stdout around the program's own output.
//!
//! Stdout of a container reads `READY`, then `GO <cpu_ns>`, then whatever the program prints,
//! then the trailer `END <nonce> <exit> <cpu_ns> <peak> <oom_kills> <duration_ns>`. READY and GO
//! come before any code of the run exists; the trailer carries a nonce the program never sees, so
//! a program cannot end its run early in the service's eyes or change what the trailer reports.

use std::time::Duration;

use crate::request::RunSpec;

/// Printed once the interpreter is started and the container can take a run.
pub const READY: &[u8] = b"\0\x1fautocrea-ready\n";
/// Printed when the program is about to start, with the CPU time used so far.
pub const GO: &[u8] = b"\0\x1fautocrea-go ";
/// Start of the trailer.
pub const END: &[u8] = b"\0\x1fautocrea-end ";
/// Longest marker line the scanner waits for before deciding it is not one.
const MAX_MARKER_LINE: usize = 256;

/// The header of a run: a 4-byte big-endian length, then length-prefixed fields (nonce, entry,
/// argument count and arguments, file count and name/content pairs).
pub fn encode_run(nonce: &str, spec: &RunSpec) -> Vec<u8> {
    let mut body = Vec::new();
    field(&mut body, nonce.as_bytes());
    field(&mut body, spec.entry.as_str().as_bytes());
    count(&mut body, spec.args.len());
    for arg in &spec.args {
        field(&mut body, arg.as_bytes());
    }
    count(&mut body, spec.files.len());
    for file in &spec.files {
        field(&mut body, file.name.as_str().as_bytes());
        field(&mut body, file.content.as_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    count(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn count(out: &mut Vec<u8>, n: usize) {
    // Request limits keep every length far below 4 GiB.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    count(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// What the supervisor reported at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// The program's exit code (128 + n when signal n killed it).
    pub exit_code: i64,
    /// CPU time of the run (every process of the container since GO).
    pub cpu: Option<Duration>,
    /// Highest memory use of the container.
    pub memory_peak_bytes: Option<i64>,
    /// Processes the OOM killer killed.
    pub oom_kills: u64,
    /// Wall-clock time from the start of the program to its exit.
    pub duration: Option<Duration>,
}

/// What a piece of stdout turned out to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The container is ready for a run.
    Ready,
    /// The program is starting; CPU time used by the container before it.
    Go(Option<Duration>),
    /// Output of the program.
    Output(Vec<u8>),
    /// The run is over.
    End(Trailer),
}

/// Where the scanner is in a container's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Go,
    Program,
    Done,
}

/// Splits a container's stdout into the supervisor's markers and the program's output.
#[derive(Debug)]
pub struct StdoutScanner {
    state: State,
    end_marker: Vec<u8>,
    pending: Vec<u8>,
}

/// The supervisor printed something that is not the protocol (it failed before the run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected output from the sandbox supervisor: {0:?}")]
pub struct ProtocolError(pub String);

impl StdoutScanner {
    /// A scanner for a fresh container, whose run will carry `nonce`.
    pub fn new() -> Self {
        Self {
            state: State::Ready,
            end_marker: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Sets the nonce of the run about to be written (before any of its output is pushed).
    pub fn expect_nonce(&mut self, nonce: &str) {
        self.end_marker = [END, nonce.as_bytes(), b" "].concat();
    }

    /// Whether the program has started (GO was seen).
    pub fn started(&self) -> bool {
        matches!(self.state, State::Program | State::Done)
    }

    /// Feeds a chunk of stdout; returns what it completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        loop {
            match self.state {
                State::Ready | State::Go => {
                    let Some(line) = self.take_line()? else {
                        return Ok(events);
                    };
                    if self.state == State::Ready {
                        if line != READY {
                            return Err(protocol_error(&line));
                        }
                        events.push(Event::Ready);
                        self.state = State::Go;
                    } else {
                        let Some(rest) = line.strip_prefix(GO) else {
                            return Err(protocol_error(&line));
                        };
                        let cpu = parse_number(rest.strip_suffix(b"\n").unwrap_or(rest))
                            .map(Duration::from_nanos);
                        events.push(Event::Go(cpu));
                        self.state = State::Program;
                    }
                }
                State::Program => {
                    match find(&self.pending, &self.end_marker) {
                        Some(at) => {
                            let body = at + self.end_marker.len();
                            let newline = self.pending[body..].iter().position(|&b| b == b'\n');
                            let Some(newline) = newline else {
                                // The trailer is split across chunks: pass the output before it.
                                if self.pending.len() - body > MAX_MARKER_LINE {
                                    return Err(protocol_error(&self.pending[at..]));
                                }
                                if at > 0 {
                                    events.push(Event::Output(self.pending[..at].to_vec()));
                                    self.pending.drain(..at);
                                }
                                return Ok(events);
                            };
                            let line = &self.pending[body..body + newline];
                            let trailer =
                                parse_trailer(line).ok_or_else(|| protocol_error(line))?;
                            if at > 0 {
                                events.push(Event::Output(self.pending[..at].to_vec()));
                            }
                            events.push(Event::End(trailer));
                            self.pending.clear();
                            self.state = State::Done;
                        }
                        None => {
                            // Keep back only a tail that could be the start of the trailer.
                            let keep = partial_suffix(&self.pending, &self.end_marker);
                            let pass = self.pending.len() - keep;
                            if pass > 0 {
                                events.push(Event::Output(self.pending[..pass].to_vec()));
                                self.pending.drain(..pass);
                            }
                            return Ok(events);
                        }
                    }
                }
                State::Done => {
                    // Nothing follows the trailer (every process is gone before it is written).
                    self.pending.clear();
                    return Ok(events);
                }
            }
        }
    }

    /// At end of stream: output held back because it looked like the start of the trailer.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.state == State::Program {
            std::mem::take(&mut self.pending)
        } else {
            Vec::new()
        }
    }

    fn take_line(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self.pending.iter().position(|&b| b == b'\n') {
            Some(at) => Ok(Some(self.pending.drain(..=at).collect())),
            None if self.pending.len() > MAX_MARKER_LINE => Err(protocol_error(&self.pending)),
            None => Ok(None),
        }
    }
}

impl Default for StdoutScanner {
    fn default() -> Self {
        Self::new()
    }
}

fn protocol_error(bytes: &[u8]) -> ProtocolError {
    let shown = &bytes[..bytes.len().min(MAX_MARKER_LINE)];
    ProtocolError(String::from_utf8_lossy(shown).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Length of the longest proper suffix of `bytes` that is a prefix of `marker`.
fn partial_suffix(bytes: &[u8], marker: &[u8]) -> usize {
    let longest = marker.len().saturating_sub(1).min(bytes.len());
    (1..=longest)
        .rev()
        .find(|&n| bytes[bytes.len() - n..] == marker[..n])
        .unwrap_or(0)
}

fn parse_number(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

fn parse_trailer(bytes: &[u8]) -> Option<Trailer> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split(' ');
    let exit_code = parts.next()?.parse().ok()?;
    let mut optional = || -> Option<Option<u64>> {
        let part = parts.next()?;
        Some(if part == "-" {
            None
        } else {
            Some(part.parse().ok()?)
        })
    };
    let cpu = optional()?.map(Duration::from_nanos);
    let memory_peak_bytes = optional()?.and_then(|b| i64::try_from(b).ok());
    let oom_kills = optional()?.unwrap_or(0);
    let duration = optional()?.map(Duration::from_nanos);
    Some(Trailer {
        exit_code,
        cpu,
        memory_peak_bytes,
        oom_kills,
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(events: &[Event]) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Output(bytes) => Some(bytes.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .concat()
    }

    fn started(nonce: &str) -> StdoutScanner {
        let mut s = StdoutScanner::new();
        s.expect_nonce(nonce);
        let events = s
            .push(b"\0\x1fautocrea-ready\n\0\x1fautocrea-go 12")
            .unwrap();
        assert_eq!(events, [Event::Ready]);
        let events = s.push(b"5\nhel").unwrap();
        assert_eq!(
            events,
            [
                Event::Go(Some(Duration::from_nanos(125))),
                Event::Output(b"hel".to_vec())
            ]
        );
        s
    }

    #[test]
    fn markers_frame_the_program_output() {
        let mut s = started("n1");
        let events = s
            .push(b"lo\n\0\x1fautocrea-end n1 3 1000 4096 0 77\n")
            .unwrap();
        assert_eq!(output(&events), b"lo\n");
        assert_eq!(
            events.last(),
            Some(&Event::End(Trailer {
                exit_code: 3,
                cpu: Some(Duration::from_nanos(1000)),
                memory_peak_bytes: Some(4096),
                oom_kills: 0,
                duration: Some(Duration::from_nanos(77)),
            }))
        );
    }

    #[test]
    fn a_trailer_split_anywhere_is_found_and_a_false_start_is_output() {
        let full = b"out\0\x1fautocrea-end nonce 0 - - 1 -\n";
        for split in 0..full.len() {
            let mut s = started("nonce");
            let mut events = s.push(&full[..split]).unwrap();
            events.extend(s.push(&full[split..]).unwrap());
            assert_eq!(output(&events), b"out", "split at {split}");
            assert!(
                matches!(events.last(), Some(Event::End(t)) if t.oom_kills == 1 && t.cpu.is_none()),
                "split at {split}: {events:?}"
            );
        }
        // A trailer with the wrong nonce is the program's output.
        let mut s = started("right");
        let fake = b"\0\x1fautocrea-end wrong 0 - - 0 -\n";
        let mut events = s.push(fake).unwrap();
        events.extend(s.push(b"\0\x1f").unwrap());
        let mut all = output(&events);
        all.extend(s.finish());
        assert_eq!(all, [fake.as_slice(), b"\0\x1f"].concat());
    }

    #[test]
    fn anything_else_before_go_is_a_protocol_error() {
        let mut s = StdoutScanner::new();
        assert!(s.push(b"Traceback (most recent call last):\n").is_err());
        let mut s = StdoutScanner::new();
        s.push(READY).unwrap();
        assert!(!s.started());
        assert!(s.push(b"hello\n").is_err());
    }

    #[test]
    fn header_fields_are_length_prefixed() {
        let config = crate::Config::default();
        let spec = RunSpec::parse(
            autocrea_proto::sandbox::v1::ExecuteRequest {
                language: "python".into(),
                code: "print(1)".into(),
                args: vec!["a".into()],
                ..Default::default()
            },
            &config,
        )
        .unwrap();
        let header = encode_run("ab", &spec);
        let expected: Vec<u8> = [
            &[0, 0, 0, 2][..],
            b"ab",
            &[0, 0, 0, 7],
            b"main.py",
            &[0, 0, 0, 1, 0, 0, 0, 1],
            b"a",
            &[0, 0, 0, 1, 0, 0, 0, 7],
            b"main.py",
            &[0, 0, 0, 8],
            b"print(1)",
        ]
        .concat();
        assert_eq!(
            &header[..4],
            &u32::try_from(expected.len()).unwrap().to_be_bytes()
        );
        assert_eq!(&header[4..], expected);
    }
}
