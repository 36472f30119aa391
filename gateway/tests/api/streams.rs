//! Event streams that cannot be held hostage: a client that stops reading loses its stream and
//! the upstream call behind it within the write timeout, each user has a cap on open streams, and
//! quiet streams send heartbeats. Over the wire against the real gateway, ai-service (with a fake
//! provider) and sandbox-service (with the real Docker engine).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use fake_providers::ai::Reply;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::ai::{AiStack, anthropic, generate_body};
use crate::deploy::{EventStream, Frame};
use crate::faults::open_unread_stream;
use crate::helpers::*;

/// An AI stack whose gateway has `adjust` applied and whose provider calls may take their time
/// (so that only the gateway's write timeout can end a stalled one).
async fn ai_stack(adjust: impl FnOnce(&mut gateway::Config)) -> AiStack {
    AiStack::start_with(
        anthropic,
        |ai| {
            if let Some(provider) = &mut ai.provider {
                provider.timeouts.first_byte = Duration::from_secs(30);
                provider.timeouts.total = Duration::from_secs(300);
            }
        },
        adjust,
    )
    .await
}

/// Opens an AI stream as an ordinary client does.
async fn open_stream(stack: &AiStack, user: &str, prompt: &str) -> reqwest::Response {
    stack
        .gateway
        .post("/api/ai/generate", user)
        .header("accept", "text/event-stream")
        .json(&generate_body(prompt))
        .send()
        .await
        .unwrap()
}

/// Reads an SSE response until its first `delta` event.
async fn first_delta(response: reqwest::Response) -> EventStream {
    assert_eq!(response.status(), 200);
    let mut events = EventStream::new(response);
    loop {
        match events.next().await.expect("a delta before the end") {
            Frame::Comment => continue,
            Frame::Event(_, name, _) if name == "delta" => return events,
            Frame::Event(_, name, data) => panic!("{name} before any delta: {data}"),
        }
    }
}

/// Reads an SSE response to its end; returns the names of its events.
async fn event_names(mut events: EventStream) -> Vec<String> {
    let mut names = Vec::new();
    while let Some(frame) = events.next().await {
        if let Frame::Event(_, name, _) = frame {
            names.push(name);
        }
    }
    names
}

/// Waits until the fake provider has received `n` requests.
async fn provider_calls(stack: &AiStack, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.fake.calls() < n {
        assert!(Instant::now() < deadline, "the provider call was not made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_loses_its_stream_and_the_provider_call_within_the_write_timeout() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
    const FIRST_BYTE: Duration = Duration::from_secs(2);
    let stack = ai_stack(|gw| {
        gw.streams.write_timeout = WRITE_TIMEOUT;
        gw.streams.max_per_user = NonZeroUsize::MIN;
        // Long enough that only the stalled data frames, not a heartbeat, can trip the timeout.
        gw.streams.heartbeat = Duration::from_secs(60);
    })
    .await;
    // After a pause, four 2 MiB deltas, then the provider holds its stream open until its client
    // hangs up: more than the buffers between the gateway and a client that reads nothing take.
    stack.fake.set_text(&"x".repeat(8 << 20));
    stack.fake.script([Reply::Slow(
        FIRST_BYTE,
        Box::new(Reply::StreamHang { tokens: 4 }),
    )]);
    let user = unique_user("sse_stall");

    let sent = Instant::now();
    let mut stalled = open_unread_stream(&stack.gateway, &user, 0).await;
    provider_calls(&stack, 1).await;
    // From before the provider answers until the write timeout, the stream holds the user's
    // only slot.
    let refused = open_stream(&stack, &user, "while stalled").await;
    assert_problem(refused, 429).await;

    assert!(
        stack.fake.wait_for_hangup(Duration::from_secs(60)).await,
        "the provider call behind the stalled stream was not cancelled"
    );
    let cancelled_after = sent.elapsed();
    // The pause, the time to push 8 MiB through ai-service and the gateway (under 1 s on an idle
    // machine, many on a very busy one), then the write timeout; well before the heartbeat that
    // would otherwise reveal the stall.
    let least = FIRST_BYTE + WRITE_TIMEOUT;
    assert!(
        cancelled_after >= least && cancelled_after < least + Duration::from_secs(40),
        "cancelled {cancelled_after:?} after the request, write timeout {WRITE_TIMEOUT:?}"
    );

    // The slot is free again while the stalled connection is still open: a new stream runs to
    // its end.
    stack.fake.set_text("print('again')");
    let names = event_names(first_delta(open_stream(&stack, &user, "again").await).await).await;
    assert_eq!(names.last().map(String::as_str), Some("done"), "{names:?}");

    // The stalled client, reading at last, gets what was already written and then the
    // connection closes without the end of the response: no `done`, no final chunk.
    let mut received = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read_all.is_ok(), "the timed-out connection was not closed");
    assert!(received.starts_with(b"HTTP/1.1 200"));
    let tail = &received[received.len().saturating_sub(64 * 1024)..];
    assert!(!contains(tail, b"event: done"), "the stream was not cut");
    assert!(
        !received.ends_with(b"0\r\n\r\n"),
        "the response was ended as complete"
    );
    eprintln!(
        "stalled reader: provider call cancelled {cancelled_after:?} after the request (write \
         timeout {WRITE_TIMEOUT:?}); the connection still held {} KiB for the client, then closed",
        received.len() >> 10
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_may_hold_only_the_configured_number_of_streams() {
    const CAP: usize = 3;
    let stack = ai_stack(|gw| gw.streams.max_per_user = NonZeroUsize::new(CAP).unwrap()).await;
    let user = unique_user("sse_cap");
    stack
        .fake
        .script(std::iter::repeat_n(Reply::StreamHang { tokens: 1 }, CAP));
    let mut open = Vec::new();
    for n in 0..CAP {
        let response = open_stream(&stack, &user, &format!("hold {n}")).await;
        open.push(first_delta(response).await);
    }

    // One more is refused before any upstream call, on every streaming route.
    let refused = open_stream(&stack, &user, "one too many").await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let problem = assert_problem(refused, 429).await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("too-many-streams"),
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("close"), "{detail}");
    assert_eq!(
        stack.fake.calls(),
        CAP,
        "the refused stream reached the provider"
    );
    // sandbox-service is not even running: the cap answers first.
    let sandbox = stack
        .gateway
        .post("/api/sandbox/execute", &user)
        .header("accept", "text/event-stream")
        .json(&json!({"language": "bash", "code": "echo hi"}))
        .send()
        .await
        .unwrap();
    assert_problem(sandbox, 429).await;
    // Answers that do not stream are not capped.
    let unary = stack
        .gateway
        .post("/api/ai/generate", &user)
        .json(&generate_body("not streamed"))
        .send()
        .await
        .unwrap();
    assert_eq!(unary.status(), 200);

    // Another user is unaffected.
    let other = unique_user("sse_cap_other");
    let names = event_names(first_delta(open_stream(&stack, &other, "other").await).await).await;
    assert_eq!(names.last().map(String::as_str), Some("done"), "{names:?}");

    // Closing one stream frees its slot (once the gateway has let go of the provider call).
    drop(open.pop());
    assert!(stack.fake.wait_for_hangup(Duration::from_secs(15)).await);
    let names = event_names(first_delta(open_stream(&stack, &user, "again").await).await).await;
    assert_eq!(names.last().map(String::as_str), Some("done"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_sandbox_and_ai_streams_send_heartbeats() {
    const HEARTBEAT: Duration = Duration::from_millis(300);
    let (stack, _sandbox) = crate::sandbox::sandbox_stack(None, |gw| {
        gw.streams.heartbeat = HEARTBEAT;
    })
    .await;
    let user = unique_user("sse_heartbeat");
    let response = stack
        .gateway
        .post("/api/sandbox/execute", &user)
        .header("accept", "text/event-stream")
        .json(&json!({"language": "bash", "code": "echo start; sleep 3; echo end"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = EventStream::new(response);
    // What the client sees: `c` for a heartbeat, the text of output events, `result`.
    let mut seen = Vec::new();
    while let Some(frame) = events.next().await {
        seen.push(match frame {
            Frame::Comment => "c".to_string(),
            Frame::Event(_, name, data) if name == "stdout" => {
                data["text"].as_str().unwrap().trim().to_string()
            }
            Frame::Event(_, name, _) => name,
        });
    }
    let start = seen.iter().position(|s| s == "start").expect("start");
    let end = seen.iter().position(|s| s == "end").expect("end");
    let quiet = seen[start..end].iter().filter(|s| *s == "c").count();
    // 3 s of silence at 300 ms: about ten; at least two even on a busy machine.
    assert!(quiet >= 2, "heartbeats while the run was quiet: {seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("result"), "{seen:?}");
    drop(stack);

    // An AI stream whose provider goes quiet after its first token.
    let stack = ai_stack(|gw| gw.streams.heartbeat = HEARTBEAT).await;
    stack.fake.script([Reply::StreamHang { tokens: 1 }]);
    let mut events = first_delta(open_stream(&stack, &user, "quiet").await).await;
    for _ in 0..2 {
        assert!(
            matches!(events.next().await, Some(Frame::Comment)),
            "a heartbeat while the provider is quiet"
        );
    }
}
