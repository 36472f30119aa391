//! Server-sent events: content negotiation, event framing, and the one way every streaming route
//! (AI generate and chat, deployment events, sandbox runs) answers with a gRPC stream.
//!
//! # What a stream may hold, and for how long
//!
//! A stream costs an open gRPC call behind it (an AI provider request, a sandbox container, a
//! deployment watch) and the buffers between the two (HTTP/2 windows of up to 1 MiB). Two limits
//! keep clients from pinning those:
//!
//! - **A cap per user** ([`StreamLimits::max_per_user`]): [`OpenStreams::open`] takes a slot
//!   before any upstream call is made and refuses one more with 429. The slot is a guard owned
//!   by the task that reads the upstream, so it is freed however the stream ends.
//! - **A write timeout** ([`StreamLimits::write_timeout`]): a client that has not accepted a
//!   write for that long loses its stream and the upstream call is cancelled.
//!
//! # Why a pump task and a channel
//!
//! actix-web polls a response body only while its write buffer has room: when the client stops
//! reading, the socket buffers fill, then the dispatcher's buffer (32 KiB, or one frame when a
//! frame is larger), and the body is not polled again. A timer inside the body would never fire,
//! and the body, owning the gRPC stream, would keep the call open for as long as the connection
//! lives.
//!
//! So the upstream is read by a task of its own (the *pump*), which hands rendered frames to the
//! body through a channel of [`CHANNEL_FRAMES`] frames and notes when it handed each. A frame
//! counts as written when actix takes it from the channel, which it does only while the client
//! reads. When frames wait and actix has taken none for the write timeout, the pump gives up: it
//! marks the stream timed out, frees the waiting frames, and drops the upstream (a gRPC stream
//! dropped is reset, which cancels the call behind it) and then its slot. The body ends with an
//! error the next time actix polls it, so that actix closes the connection rather than end the
//! response as if it were complete. When the upstream is quiet the next frame is a heartbeat, so
//! a stall is noticed at worst one heartbeat interval plus the write timeout after the last
//! frame.
//!
//! What a stalled connection still holds after that: actix does not poll a body whose client
//! reads nothing, so until the client reads again or goes away the connection keeps its socket,
//! with what the kernel buffered for it (at most the socket's send buffer, `net.ipv4.tcp_wmem`),
//! and actix's write buffer (32 KiB, or the one larger frame in it). No upstream call, no slot,
//! no gRPC buffer and no waiting frame remain.
//!
//! The pump also ends, dropping the upstream at once, when the client goes away (actix drops the
//! body), and sends a heartbeat comment after [`StreamLimits::heartbeat`] without a frame: it
//! keeps proxies from closing a quiet stream, and a write is what reveals a reader that went
//! away or stalled.

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU64, NonZeroUsize};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::identity::Caller;
use crate::problem::ApiError;

/// How long a stream may go without an event before it sends a heartbeat comment.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// The heartbeat: an SSE comment, ignored by clients.
const HEARTBEAT_COMMENT: &[u8] = b": keep-alive\n\n";
/// Default of [`StreamLimits::write_timeout`], in seconds.
pub const DEFAULT_WRITE_TIMEOUT_SECS: NonZeroU64 = NonZeroU64::new(30).expect("non-zero");
/// Default of [`StreamLimits::max_per_user`].
pub const DEFAULT_MAX_STREAMS_PER_USER: NonZeroUsize = NonZeroUsize::new(8).expect("non-zero");
/// Frames rendered ahead of what actix has taken: enough to keep the body fed, few enough that
/// a stalled stream does not read much more from its upstream.
pub const CHANNEL_FRAMES: usize = 2;

/// Limits on server-sent event streams.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// A stream whose client has not accepted a write for this long is closed and its upstream
    /// call cancelled (`SSE_WRITE_TIMEOUT_SECS`, default 30).
    pub write_timeout: Duration,
    /// Streams one user may have open at once, across all streaming routes
    /// (`SSE_MAX_STREAMS_PER_USER`, default 8: a few browser tabs each following an AI answer, a
    /// deployment and a run; far below what would pin real memory).
    pub max_per_user: NonZeroUsize,
    /// Time without an event before a heartbeat comment: [`HEARTBEAT`]. Not read from the
    /// environment; tests shorten it.
    pub heartbeat: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            write_timeout: Duration::from_secs(DEFAULT_WRITE_TIMEOUT_SECS.get()),
            max_per_user: DEFAULT_MAX_STREAMS_PER_USER,
            heartbeat: HEARTBEAT,
        }
    }
}

/// Whether the client asked for an event stream (`Accept: text/event-stream`).
pub fn wants_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// One event. JSON has no raw newlines, so `data` is always a single line.
pub fn event(name: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The event streams open now, counted per user, and the limits they run under. One per
/// process (in `AppState`); the cap applies per gateway replica.
#[derive(Debug, Clone)]
pub struct OpenStreams {
    inner: Arc<OpenStreamsInner>,
}

#[derive(Debug)]
struct OpenStreamsInner {
    limits: StreamLimits,
    by_user: Mutex<HashMap<String, usize>>,
}

impl OpenStreams {
    /// No stream open yet.
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            inner: Arc::new(OpenStreamsInner {
                limits,
                by_user: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes one of `caller`'s stream slots, or refuses with 429 when they are all taken. Call it
    /// before the upstream call, so that a refused stream costs nothing behind the gateway.
    pub fn open(&self, caller: &Caller) -> Result<StreamSlot, ApiError> {
        let max = self.inner.limits.max_per_user.get();
        let mut by_user = self.inner.by_user.lock().expect("stream counts");
        let open = by_user.entry(caller.user_id.clone()).or_insert(0);
        if *open >= max {
            // A stalled stream frees its slot within the write timeout; a healthy one when it ends.
            let retry_after = self.inner.limits.write_timeout.as_secs().max(1);
            return Err(ApiError::custom(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-streams",
                "Too many open event streams",
                format!(
                    "you have {max} event streams open, the most one user may have at once; close \
                     one of them (or wait for one to end) and try again"
                ),
            )
            .with_retry_after(retry_after));
        }
        *open += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            user: caller.user_id.clone(),
        })
    }

    /// Streams `user` has open now.
    pub fn open_by(&self, user: &str) -> usize {
        let by_user = self.inner.by_user.lock().expect("stream counts");
        by_user.get(user).copied().unwrap_or(0)
    }
}

/// One open stream of one user; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    streams: OpenStreams,
    user: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut by_user = self.streams.inner.by_user.lock().expect("stream counts");
        if let Some(open) = by_user.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                by_user.remove(&self.user);
            }
        }
    }
}

/// What the stream does with one upstream outcome.
#[derive(Debug)]
pub enum Step {
    /// Send this frame, if any, and read on.
    Continue(Option<Bytes>),
    /// Send this frame, if any, and end the stream.
    Finish(Option<Bytes>),
}

impl StreamSlot {
    /// Answers with `upstream` as an event stream on `response` (headers such as
    /// `Server-Timing` already set): `step` renders every message (`Ok(Some(_))`), the end of the
    /// upstream (`Ok(None)`) and its failure (`Err(_)`); after either of the last two the stream
    /// ends whatever `step` returns. Heartbeats, the write timeout and this slot are handled here;
    /// see the module documentation.
    pub fn respond<S, T, F>(
        self,
        mut response: HttpResponseBuilder,
        upstream: S,
        step: F,
    ) -> HttpResponse
    where
        S: Stream<Item = Result<T, tonic::Status>> + Send + Unpin + 'static,
        T: Send + 'static,
        F: FnMut(Result<Option<T>, tonic::Status>) -> Step + Send + 'static,
    {
        response
            .content_type("text/event-stream")
            // `Cache-Control: no-store` comes with every `/api` answer (`security_headers`).
            // Tells nginx-style proxies not to buffer the stream.
            .insert_header((HeaderName::from_static("x-accel-buffering"), "no"))
            .streaming(self.start(upstream, step))
    }

    /// Starts the pump and returns the body it feeds.
    fn start<S, T, F>(self, upstream: S, step: F) -> EventBody
    where
        S: Stream<Item = Result<T, tonic::Status>> + Send + Unpin + 'static,
        T: Send + 'static,
        F: FnMut(Result<Option<T>, tonic::Status>) -> Step + Send + 'static,
    {
        let (frames, rx) = mpsc::channel(CHANNEL_FRAMES);
        let (taken_tx, taken) = watch::channel(0);
        let channel = Arc::new(Channel {
            rx: Mutex::new(rx),
            timed_out: AtomicBool::new(false),
        });
        let mut pump = Pump {
            frames,
            taken,
            channel: Arc::clone(&channel),
            limits: self.streams.inner.limits.clone(),
        };
        tokio::spawn(
            async move {
                let mut upstream = upstream;
                pump.run(&mut upstream, step).await;
                // Upstream first: by the time the slot is free again the call is cancelled.
                drop(upstream);
                drop(self);
            }
            .in_current_span(),
        );
        EventBody {
            channel,
            taken: taken_tx,
        }
    }
}

/// The receiving end of the frames, shared so that the pump can empty it when it gives up.
struct Channel {
    rx: Mutex<mpsc::Receiver<Bytes>>,
    timed_out: AtomicBool,
}

impl Channel {
    fn rx(&self) -> std::sync::MutexGuard<'_, mpsc::Receiver<Bytes>> {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the upstream and hands frames to the body.
struct Pump {
    frames: mpsc::Sender<Bytes>,
    /// How many frames the body has taken so far.
    taken: watch::Receiver<u64>,
    channel: Arc<Channel>,
    limits: StreamLimits,
}

impl Pump {
    /// Runs until the upstream ends, the client goes away or a frame waits past the write
    /// timeout. A frame counts as written when actix takes it from the channel, which it does
    /// only while its write buffer has room, that is while the client reads.
    async fn run<S, T, F>(&mut self, upstream: &mut S, mut step: F)
    where
        S: Stream<Item = Result<T, tonic::Status>> + Unpin,
        F: FnMut(Result<Option<T>, tonic::Status>) -> Step,
    {
        // When each frame still in the channel was handed over, oldest first.
        let mut waiting: VecDeque<Instant> = VecDeque::with_capacity(CHANNEL_FRAMES);
        let mut handed: u64 = 0;
        // When the body was last seen taking a frame.
        let (mut taken_before, mut last_take) = (0, Instant::now());
        let idle = tokio::time::sleep(self.limits.heartbeat);
        tokio::pin!(idle);
        loop {
            // Forget the frames the body has taken since.
            let taken = *self.taken.borrow_and_update();
            if taken > taken_before {
                (taken_before, last_take) = (taken, Instant::now());
            }
            let in_channel = usize::try_from(handed.saturating_sub(taken)).unwrap_or(usize::MAX);
            while waiting.len() > in_channel {
                waiting.pop_front();
            }
            // A frame is waiting: the client must take something within the write timeout of
            // that frame's arrival or of its last take, whichever is later.
            let deadline = waiting
                .front()
                .map(|at| (*at).max(last_take) + self.limits.write_timeout);
            let room = waiting.len() < CHANNEL_FRAMES;
            let outcome = tokio::select! {
                biased;
                changed = self.taken.changed() => match changed {
                    Ok(()) => continue,
                    // The body was dropped: the client went away.
                    Err(_) => return,
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)),
                    if deadline.is_some() =>
                {
                    self.channel.timed_out.store(true, Ordering::SeqCst);
                    // The frames waiting are not going to be written: free them now, not when
                    // the stalled connection finally closes.
                    let mut rx = self.channel.rx();
                    rx.close();
                    while rx.try_recv().is_ok() {}
                    drop(rx);
                    tracing::warn!(
                        timeout_secs = self.limits.write_timeout.as_secs_f64(),
                        "event stream closed: the client accepted no write in time; upstream \
                         call cancelled"
                    );
                    return;
                }
                next = upstream.next(), if room => match next {
                    Some(Ok(message)) => step(Ok(Some(message))),
                    Some(Err(status)) => match step(Err(status)) {
                        Step::Continue(frame) | Step::Finish(frame) => Step::Finish(frame),
                    },
                    None => match step(Ok(None)) {
                        Step::Continue(frame) | Step::Finish(frame) => Step::Finish(frame),
                    },
                },
                () = &mut idle, if waiting.is_empty() => {
                    Step::Continue(Some(Bytes::from_static(HEARTBEAT_COMMENT)))
                }
            };
            let (frame, last) = match outcome {
                Step::Continue(frame) => (frame, false),
                Step::Finish(frame) => (frame, true),
            };
            if let Some(frame) = frame {
                // There is room: fewer frames wait than the channel holds.
                if self.frames.try_send(frame).is_err() {
                    return;
                }
                let now = Instant::now();
                waiting.push_back(now);
                handed += 1;
                idle.as_mut().reset(now + self.limits.heartbeat);
            }
            if last {
                return;
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// The response body: the pump's frames, then the end, or an error after a write timeout so
/// that actix closes the connection instead of ending the response as if it were complete.
struct EventBody {
    channel: Arc<Channel>,
    /// Counts the frames taken, for the pump's write timeout.
    taken: watch::Sender<u64>,
}

impl Stream for EventBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.channel.timed_out.load(Ordering::SeqCst) {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "event stream write timeout: the client stopped reading",
            ))));
        }
        let polled = self.channel.rx().poll_recv(cx);
        match polled {
            Poll::Ready(Some(frame)) => {
                self.taken.send_modify(|n| *n += 1);
                Poll::Ready(Some(Ok(frame)))
            }
            // The pump has ended: the stream is complete, or it has just timed out.
            Poll::Ready(None) if self.channel.timed_out.load(Ordering::SeqCst) => {
                self.poll_next(cx)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    fn caller(user: &str) -> Caller {
        Caller {
            user_id: user.to_string(),
            method: AuthMethod::Jwt,
        }
    }

    fn limits(max: usize) -> StreamLimits {
        StreamLimits {
            write_timeout: Duration::from_millis(300),
            max_per_user: NonZeroUsize::new(max).unwrap(),
            heartbeat: Duration::from_millis(100),
        }
    }

    #[test]
    fn a_user_gets_max_streams_then_429_and_the_slot_back_when_one_ends() {
        let streams = OpenStreams::new(limits(2));
        let first = streams.open(&caller("ann")).unwrap();
        let _second = streams.open(&caller("ann")).unwrap();
        let refused = streams.open(&caller("ann")).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.to_string().contains("close one"), "{refused}");
        // Another user is counted apart.
        let _bob = streams.open(&caller("bob")).unwrap();
        drop(first);
        assert_eq!(streams.open_by("ann"), 1);
        let _third = streams.open(&caller("ann")).unwrap();
        assert_eq!(streams.open_by("ann"), 2);
    }

    #[test]
    fn the_last_slot_dropped_forgets_the_user() {
        let streams = OpenStreams::new(limits(1));
        drop(streams.open(&caller("ann")).unwrap());
        assert!(streams.inner.by_user.lock().unwrap().is_empty());
    }

    /// An upstream the test feeds, and a way to see that the pump dropped it.
    fn upstream() -> (
        mpsc::Sender<Result<u32, tonic::Status>>,
        impl Stream<Item = Result<u32, tonic::Status>> + Send + Unpin + 'static,
    ) {
        let (tx, rx) = mpsc::channel(16);
        (tx, tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    fn numbers(item: Result<Option<u32>, tonic::Status>) -> Step {
        match item {
            Ok(Some(n)) => Step::Continue(Some(Bytes::from(format!("data: {n}\n\n")))),
            Ok(None) => Step::Finish(Some(Bytes::from_static(b"event: end\n\n"))),
            Err(_) => Step::Finish(Some(Bytes::from_static(b"event: error\n\n"))),
        }
    }

    #[tokio::test]
    async fn frames_then_the_end_and_heartbeats_while_quiet() {
        let streams = OpenStreams::new(limits(1));
        let slot = streams.open(&caller("ann")).unwrap();
        let (tx, upstream) = upstream();
        let mut body = slot.start(upstream, numbers);
        let heartbeat = Bytes::from_static(HEARTBEAT_COMMENT);
        tx.send(Ok(1)).await.unwrap();
        let mut frame = body.next().await.unwrap().unwrap();
        while frame == heartbeat {
            frame = body.next().await.unwrap().unwrap();
        }
        assert_eq!(frame, "data: 1\n\n");
        // Quiet: a heartbeat after 100 ms.
        assert_eq!(body.next().await.unwrap().unwrap(), heartbeat);
        drop(tx);
        let mut frame = body.next().await.unwrap().unwrap();
        while frame == heartbeat {
            frame = body.next().await.unwrap().unwrap();
        }
        assert_eq!(frame, "event: end\n\n");
        assert!(body.next().await.is_none());
        tokio::time::timeout(Duration::from_secs(5), async {
            while streams.open_by("ann") > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the slot is freed when the stream ends");
    }

    #[tokio::test]
    async fn a_body_not_polled_times_out_drops_the_upstream_and_frees_the_slot() {
        let streams = OpenStreams::new(limits(1));
        let slot = streams.open(&caller("ann")).unwrap();
        let (tx, upstream) = upstream();
        let mut body = slot.start(upstream, numbers);
        // Nobody polls the body: the channel fills, then a send waits past the timeout.
        for n in 0..10 {
            if tx.send(Ok(n)).await.is_err() {
                break;
            }
        }
        tokio::time::timeout(Duration::from_secs(10), tx.closed())
            .await
            .expect("the pump dropped the upstream");
        assert_eq!(streams.open_by("ann"), 0, "the slot was freed");
        assert!(
            body.channel.rx().is_empty(),
            "the waiting frames were freed"
        );
        let error = body.next().await.unwrap().unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let streams = OpenStreams::new(StreamLimits {
            write_timeout: Duration::from_millis(1000),
            ..limits(1)
        });
        let slot = streams.open(&caller("ann")).unwrap();
        let (tx, upstream) = upstream();
        let mut body = slot.start(upstream, numbers);
        let feed = tokio::spawn(async move {
            for n in 0..8 {
                tx.send(Ok(n)).await.unwrap();
            }
        });
        // A frame every 600 ms against a 1 s timeout: frames queue behind each other for longer
        // than that, but the client never goes 1 s without taking one.
        let mut received = 0;
        while received < 8 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let frame = body.next().await.unwrap().expect("not timed out");
            if frame != HEARTBEAT_COMMENT {
                received += 1;
            }
        }
        feed.await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_body_drops_the_upstream_at_once() {
        let streams = OpenStreams::new(limits(1));
        let slot = streams.open(&caller("ann")).unwrap();
        let (tx, upstream) = upstream();
        let body = slot.start(upstream, numbers);
        drop(body);
        tokio::time::timeout(Duration::from_secs(5), tx.closed())
            .await
            .expect("the pump dropped the upstream");
        assert_eq!(streams.open_by("ann"), 0);
    }
}
