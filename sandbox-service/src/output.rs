//! What a run printed: stdout and stderr kept up to a shared byte limit, and decoded to text in
//! chunks that end on UTF-8 character boundaries for streaming.

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Output kept for one run.
#[derive(Debug)]
pub struct Capture {
    limit: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_text: Utf8Chunks,
    stderr_text: Utf8Chunks,
    truncated: bool,
}

impl Capture {
    /// Keeps at most `limit` bytes of stdout and stderr together.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_text: Utf8Chunks::default(),
            stderr_text: Utf8Chunks::default(),
            truncated: false,
        }
    }

    /// Keeps what fits of `bytes` and returns it as text for streaming (an incomplete trailing
    /// character waits for the next chunk).
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) -> String {
        let room = self.limit - (self.stdout.len() + self.stderr.len());
        let kept = if bytes.len() > room {
            self.truncated = true;
            &bytes[..room]
        } else {
            bytes
        };
        let (buffer, text) = match stream {
            Stream::Stdout => (&mut self.stdout, &mut self.stdout_text),
            Stream::Stderr => (&mut self.stderr, &mut self.stderr_text),
        };
        buffer.extend_from_slice(kept);
        text.push(kept)
    }

    /// Whether output was dropped because the limit was reached.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The whole stdout and stderr as text (invalid UTF-8 replaced).
    pub fn into_text(self) -> (String, String) {
        (
            String::from_utf8_lossy(&self.stdout).into_owned(),
            String::from_utf8_lossy(&self.stderr).into_owned(),
        )
    }
}

/// Turns a byte stream into text pieces that never split a character.
#[derive(Debug, Default)]
struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            // An incomplete character at the end: keep it for the next chunk.
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }
}

/// Name of signal `n` (the exit status is 128+n when a process dies of it).
pub fn signal_name(exit_code: i64) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let n = usize::try_from(exit_code.checked_sub(129)?).ok()?;
    NAMES.get(n).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_never_split_characters() {
        let mut capture = Capture::new(100);
        let bytes = "é€".as_bytes();
        assert_eq!(capture.push(Stream::Stdout, &bytes[..1]), "");
        assert_eq!(capture.push(Stream::Stdout, &bytes[1..3]), "é");
        assert_eq!(capture.push(Stream::Stdout, &bytes[3..]), "€");
        assert_eq!(capture.push(Stream::Stdout, b"\xffa"), "\u{fffd}a");
    }

    #[test]
    fn limit_is_shared_and_marks_truncation() {
        let mut capture = Capture::new(5);
        capture.push(Stream::Stdout, b"abc");
        assert!(!capture.truncated());
        capture.push(Stream::Stderr, b"defg");
        assert!(capture.truncated());
        assert_eq!(capture.into_text(), ("abc".into(), "de".into()));
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(137), Some("SIGKILL"));
        assert_eq!(signal_name(139), Some("SIGSEGV"));
        assert_eq!(signal_name(1), None);
        assert_eq!(signal_name(128), None);
    }
}
