//! A stand-in AI provider: an HTTP/1.1 server on 127.0.0.1:0 speaking the Anthropic Messages
//! and OpenAI chat completions wire formats (JSON and SSE, usage, error bodies, retry headers),
//! with scripted misbehaviour (errors, slow first byte, dropped connections, streams that fail
//! or hang). It counts calls and notices clients that hang up.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The API key the fake accepts.
pub const KEY: &str = "sk-test-0123456789-SECRET";
/// Model names the fake reports.
pub const ANTHROPIC_MODEL: &str = "claude-fake-1";
pub const OPENAI_MODEL: &str = "gpt-fake-1";
/// Usage the fake reports: Anthropic splits input into plain, cache write and cache read.
pub const ANTHROPIC_INPUT: u64 = 11 + 2 + 3;
pub const ANTHROPIC_OUTPUT: u64 = 7;
pub const OPENAI_INPUT: u64 = 13;
pub const OPENAI_OUTPUT: u64 = 9;

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A successful answer with the fake's current text (JSON or SSE as the request asks).
    Answer,
    /// An error status with headers and a body in the provider's error format.
    Error {
        status: u16,
        error_type: &'static str,
        headers: Vec<(&'static str, String)>,
    },
    /// Read the request, then close the connection without answering.
    DropConnection,
    /// Wait before sending anything, then reply.
    Slow(Duration, Box<Reply>),
    /// Stream: 200, an `error` event before any token (Anthropic) / error chunk (OpenAI).
    StreamErrorFirst,
    /// Stream: 200, `tokens` deltas, then an overloaded error event.
    StreamErrorAfter { tokens: usize },
    /// Stream: 200, then `tokens` deltas and an overloaded error event in one write, so that
    /// the client reads them together.
    StreamErrorInOneWrite { tokens: usize },
    /// Stream: 200, `tokens` deltas, then nothing until the client hangs up.
    StreamHang { tokens: usize },
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    text: Mutex<String>,
    /// Input and output tokens reported instead of the constants above.
    usage: Mutex<Option<(u64, u64)>>,
    seen: Mutex<Vec<Seen>>,
    hangups: AtomicUsize,
    hangup: Notify,
}

/// Handle on a running fake provider.
#[derive(Clone)]
pub struct FakeProvider {
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// What the fake answers unless told otherwise: prose around two code blocks, so that block
/// selection and fence stripping are exercised.
pub const DEFAULT_TEXT: &str = "Here is the program.\n\n```bash\npip install nothing\n```\n\n\
```python\ndef greet(name):\n    return f\"Hello, {name}!\"\n\nprint(greet(\"world\"))\n```\n\n\
It defines greet and prints a greeting.";

impl FakeProvider {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        Self::start_on(listener)
    }

    /// Starts the fake on `listener` (the fake-providers server binds a configured address).
    pub fn start_on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("fake addr");
        let state = Arc::new(State::default());
        *state.text.lock().unwrap() = DEFAULT_TEXT.to_string();
        let s = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let _ = serve(socket, s).await;
                });
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replies to the next requests, in order; afterwards it answers normally.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Text of later answers.
    pub fn set_text(&self, text: &str) {
        *self.state.text.lock().unwrap() = text.to_string();
    }

    /// Usage reported by later answers: `input` prompt tokens (none from a provider cache) and
    /// `output` generated tokens, instead of the constants above.
    pub fn set_usage(&self, input: u64, output: u64) {
        *self.state.usage.lock().unwrap() = Some((input, output));
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Waits until a client hangs up on a hanging stream.
    pub async fn wait_for_hangup(&self, within: Duration) -> bool {
        let notified = self.state.hangup.notified();
        if self.state.hangups.load(Ordering::SeqCst) > 0 {
            return true;
        }
        tokio::time::timeout(within, notified).await.is_ok()
            || self.state.hangups.load(Ordering::SeqCst) > 0
    }
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Option<Seen>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Some(Seen {
        path,
        headers,
        body,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn write_json(
    socket: &mut TcpStream,
    status: u16,
    headers: &[(&'static str, String)],
    body: &Value,
) -> std::io::Result<()> {
    let body = body.to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.shutdown().await
}

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    Anthropic,
    OpenAi,
}

fn error_body(wire: Wire, error_type: &str, message: &str) -> Value {
    match wire {
        Wire::Anthropic => json!({
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": "req_fake"
        }),
        Wire::OpenAi => json!({
            "error": {"message": message, "type": error_type, "param": null, "code": error_type}
        }),
    }
}

/// Splits `text` into about four deltas so that a stream has several events.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Tokens one answer reports, in the shape of both wires.
#[derive(Clone, Copy)]
struct Bill {
    /// Prompt tokens neither written to nor read from the provider's cache.
    plain: u64,
    cache_write: u64,
    cache_read: u64,
    output: u64,
}

impl Bill {
    fn of(wire: Wire, usage: Option<(u64, u64)>) -> Self {
        match (usage, wire) {
            (Some((input, output)), _) => Self {
                plain: input,
                cache_write: 0,
                cache_read: 0,
                output,
            },
            (None, Wire::Anthropic) => Self {
                plain: 11,
                cache_write: 2,
                cache_read: 3,
                output: ANTHROPIC_OUTPUT,
            },
            // OpenAI counts cached tokens inside prompt_tokens.
            (None, Wire::OpenAi) => Self {
                plain: OPENAI_INPUT - 4,
                cache_write: 0,
                cache_read: 4,
                output: OPENAI_OUTPUT,
            },
        }
    }

    fn anthropic_usage(self, output: u64) -> Value {
        json!({"input_tokens": self.plain, "output_tokens": output,
               "cache_creation_input_tokens": self.cache_write,
               "cache_read_input_tokens": self.cache_read})
    }

    fn openai_usage(self) -> Value {
        let prompt = self.plain + self.cache_read;
        json!({"prompt_tokens": prompt, "completion_tokens": self.output,
               "total_tokens": prompt + self.output,
               "prompt_tokens_details": {"cached_tokens": self.cache_read}})
    }
}

fn anthropic_events(text: &str, bill: Bill) -> (Vec<String>, Vec<String>) {
    let start = json!({"type":"message_start","message":{"id":"msg_fake","type":"message","role":"assistant","model":ANTHROPIC_MODEL,"content":[],"stop_reason":null,"usage":bill.anthropic_usage(1)}});
    let mut head = vec![
        sse(Some("message_start"), &start),
        sse(
            Some("content_block_start"),
            &json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        sse(Some("ping"), &json!({"type":"ping"})),
    ];
    for p in pieces(text) {
        head.push(sse(
            Some("content_block_delta"),
            &json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":p}}),
        ));
    }
    let tail = vec![
        sse(
            Some("content_block_stop"),
            &json!({"type":"content_block_stop","index":0}),
        ),
        sse(
            Some("message_delta"),
            &json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":bill.output}}),
        ),
        sse(Some("message_stop"), &json!({"type":"message_stop"})),
    ];
    (head, tail)
}

fn openai_events(text: &str, include_usage: bool, bill: Bill) -> (Vec<String>, Vec<String>) {
    let chunk = |delta: Value, finish: Value| json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1,"model":OPENAI_MODEL,"choices":[{"index":0,"delta":delta,"finish_reason":finish}]});
    let mut head = vec![sse(
        None,
        &chunk(json!({"role":"assistant","content":""}), Value::Null),
    )];
    for p in pieces(text) {
        head.push(sse(None, &chunk(json!({"content": p}), Value::Null)));
    }
    let mut tail = vec![sse(None, &chunk(json!({}), json!("stop")))];
    if include_usage {
        tail.push(sse(None, &json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1,"model":OPENAI_MODEL,"choices":[],"usage":bill.openai_usage()})));
    }
    tail.push("data: [DONE]\n\n".to_string());
    (head, tail)
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(e) => format!("event: {e}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

async fn write_events(socket: &mut TcpStream, events: &[String]) -> std::io::Result<()> {
    for e in events {
        socket.write_all(e.as_bytes()).await?;
        socket.flush().await?;
        // Separate writes a little so the client sees them as separate chunks.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn serve(mut socket: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let Some(seen) = read_request(&mut socket).await? else {
        return Ok(());
    };
    state.seen.lock().unwrap().push(seen.clone());
    let wire = if seen.path == "/v1/messages" {
        Wire::Anthropic
    } else if seen.path == "/v1/chat/completions" {
        Wire::OpenAi
    } else {
        let body = json!({"error": {"message": "no such route", "type": "not_found_error"}});
        return write_json(&mut socket, 404, &[], &body).await;
    };
    let authorized = match wire {
        Wire::Anthropic => {
            seen.headers.get("x-api-key").map(String::as_str) == Some(KEY)
                && seen.headers.get("anthropic-version").map(String::as_str) == Some("2023-06-01")
        }
        Wire::OpenAi => {
            seen.headers.get("authorization").map(String::as_str)
                == Some(format!("Bearer {KEY}").as_str())
        }
    };
    if !authorized {
        // Like OpenAI, echo part of the key we were given: the service must never pass it on.
        let given = seen
            .headers
            .get("x-api-key")
            .or(seen.headers.get("authorization"))
            .cloned()
            .unwrap_or_default();
        let body = error_body(
            wire,
            "authentication_error",
            &format!("Incorrect API key provided: {given}"),
        );
        return write_json(&mut socket, 401, &[], &body).await;
    }
    let mut reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Answer);
    while let Reply::Slow(delay, next) = reply {
        tokio::time::sleep(delay).await;
        reply = *next;
    }
    let stream = seen.body["stream"] == json!(true);
    let include_usage = seen.body["stream_options"]["include_usage"] == json!(true);
    let text = state.text.lock().unwrap().clone();
    let bill = Bill::of(wire, *state.usage.lock().unwrap());
    let (head, tail) = match wire {
        Wire::Anthropic => anthropic_events(&text, bill),
        Wire::OpenAi => openai_events(&text, include_usage, bill),
    };
    let overloaded = match wire {
        Wire::Anthropic => sse(
            Some("error"),
            &error_body(wire, "overloaded_error", "Overloaded"),
        ),
        Wire::OpenAi => sse(None, &error_body(wire, "server_error", "Overloaded")),
    };
    match reply {
        Reply::Slow(..) => unreachable!("unwrapped above"),
        Reply::Answer if stream => {
            socket.write_all(sse_head().as_bytes()).await?;
            write_events(&mut socket, &head).await?;
            write_events(&mut socket, &tail).await?;
            socket.shutdown().await
        }
        Reply::Answer => {
            let body = match wire {
                Wire::Anthropic => json!({
                    "id": "msg_fake", "type": "message", "role": "assistant",
                    "model": ANTHROPIC_MODEL,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": bill.anthropic_usage(bill.output)
                }),
                Wire::OpenAi => json!({
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 1,
                    "model": OPENAI_MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": bill.openai_usage()
                }),
            };
            write_json(&mut socket, 200, &[], &body).await
        }
        Reply::Error {
            status,
            error_type,
            headers,
        } => {
            let body = error_body(wire, error_type, "scripted failure");
            write_json(&mut socket, status, &headers, &body).await
        }
        Reply::DropConnection => Ok(()),
        Reply::StreamErrorFirst => {
            socket.write_all(sse_head().as_bytes()).await?;
            let first = if wire == Wire::Anthropic {
                vec![head[0].clone(), overloaded]
            } else {
                vec![overloaded]
            };
            write_events(&mut socket, &first).await?;
            socket.shutdown().await
        }
        Reply::StreamErrorAfter { tokens } => {
            socket.write_all(sse_head().as_bytes()).await?;
            let skip = head.len() - pieces(&text).len();
            write_events(&mut socket, &head[..skip + tokens]).await?;
            write_events(&mut socket, &[overloaded]).await?;
            socket.shutdown().await
        }
        Reply::StreamErrorInOneWrite { tokens } => {
            socket.write_all(sse_head().as_bytes()).await?;
            let skip = head.len() - pieces(&text).len();
            let mut all: String = head[..skip + tokens].concat();
            all.push_str(&overloaded);
            socket.write_all(all.as_bytes()).await?;
            socket.flush().await?;
            socket.shutdown().await
        }
        Reply::StreamHang { tokens } => {
            socket.write_all(sse_head().as_bytes()).await?;
            let skip = head.len() - pieces(&text).len();
            write_events(&mut socket, &head[..skip + tokens]).await?;
            // Wait for the client to hang up: a read of 0 bytes (or an error) means it did.
            let mut buf = [0u8; 64];
            let waited = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf)).await;
            if matches!(waited, Ok(Ok(0)) | Ok(Err(_))) {
                state.hangups.fetch_add(1, Ordering::SeqCst);
                state.hangup.notify_waiters();
            }
            Ok(())
        }
    }
}

fn sse_head() -> String {
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n".to_string()
}
