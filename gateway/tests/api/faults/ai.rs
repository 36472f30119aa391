//! The AI provider overloaded, and clients that stop reading event streams.

use super::*;

/// ai-service on SQLite in front of a fake provider, and a gateway in front of that.
struct AiFaultStack {
    fake: FakeProvider,
    gateway: Gateway,
    _ai: Server,
    _data: TempDir,
}

impl AiFaultStack {
    async fn start() -> Self {
        let fake = FakeProvider::start().await;
        let mut provider = ProviderConfig::anthropic(fake.url(), KEY);
        provider.retry = RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(10),
        };
        provider.timeouts = Timeouts {
            connect: Duration::from_secs(2),
            // The fake renders a whole 8 MiB answer before its first byte: seconds when the two
            // cores are also pushing other such streams and running a busy neighbour.
            first_byte: Duration::from_secs(20),
            total: Duration::from_secs(60),
        };
        let (database_url, data) = fresh_sqlite_url();
        let mut ai_config = ai_service::Config::new(database_url);
        ai_config.caller_keys = Some(service_runtime::testing::caller_keys());
        ai_config.provider = Some(provider);
        let ai = start_ai_service(ai_config);
        let mut config = gateway_config("http://127.0.0.1:1");
        config.services.ai = format!("http://{}", ai.addr);
        config.limits = generous_limits();
        // The stalled readers here stay stalled for longer than the default write timeout, to
        // show that they slow nobody down and lose nothing; streams.rs tests the timeout.
        config.streams.write_timeout = Duration::from_secs(600);
        let gateway = Gateway::start(config).await;
        Self {
            fake,
            gateway,
            _ai: ai,
            _data: data,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_ai_provider_gives_retries_then_clear_503s_without_pile_up() {
    let stack = AiFaultStack::start().await;
    let gw = &stack.gateway;
    let user = unique_user("fault_529");
    const CALLERS: usize = 12;
    // Overloaded for a while: enough 529s for every caller's first attempt and both retries.
    let overloaded = Reply::Error {
        status: 529,
        error_type: "overloaded_error",
        headers: vec![],
    };
    stack
        .fake
        .script(std::iter::repeat_n(overloaded, CALLERS * 3));

    let started = Instant::now();
    let user = &user;
    let calls = (0..CALLERS).map(|i| async move {
        let sent = Instant::now();
        let response = gw
            .post("/api/ai/explain", user)
            .json(&json!({"code": format!("print({i})"), "language": "python"}))
            .timeout(CLIENT_DEADLINE)
            .send()
            .await
            .unwrap();
        (response, sent.elapsed())
    });
    let answers = futures::future::join_all(calls).await;
    let all_done = started.elapsed();
    let mut fastest = Duration::MAX;
    for (response, elapsed) in answers {
        assert!(response.headers().contains_key("retry-after"));
        let problem = assert_problem(response, 503).await;
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("ai-provider-unavailable"),
            "{problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("provider"),
            "{problem}"
        );
        fastest = fastest.min(elapsed);
    }
    // Every caller's first attempt and two retries, no more (backing off up to 50 ms, then up to
    // 100 ms: full jitter, whose bounds service_runtime::retry's own tests check).
    assert_eq!(stack.fake.calls(), CALLERS * 3);
    assert!(all_done < Duration::from_secs(10), "{all_done:?}");
    // Nothing is left waiting on the provider: the scrape itself is the only request in flight.
    assert_eq!(gw.metric("http_requests_in_flight", &[]).await, 1.0);

    // The provider heals: the next call is answered at once.
    let response = gw
        .post("/api/ai/explain", user)
        .json(&json!({"code": "print('healed')", "language": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(stack.fake.calls(), CALLERS * 3 + 1);
    eprintln!(
        "AI provider overloaded (529) for {} attempts: {CALLERS} callers got 503 after two \
         retries each in {all_done:?} (fastest {fastest:?}); 0 requests left in flight; the \
         next call succeeded",
        CALLERS * 3
    );
}

/// Sends a streaming generate request on a socket with a small receive buffer, and never reads
/// the answer.
pub(crate) async fn open_unread_stream(
    gw: &Gateway,
    user: &str,
    n: usize,
) -> tokio::net::TcpStream {
    // Distinct prompts, so that no answer can come from the prompt cache.
    let body = json!({"prompt": format!("large program {n}"), "language": "python"}).to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(gw.server.addr).await.unwrap();
    let request = format!(
        "POST /api/ai/generate HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Accept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        token(user),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_event_streams_do_not_slow_other_requests() {
    let stack = AiFaultStack::start().await;
    let gw = &stack.gateway;
    // Streams far larger than every buffer on the way (the client's 4 KiB receive buffer, the
    // gateway's send buffer, HTTP/2 windows): the gateway's writes to a client that does not read
    // wait for good.
    const TEXT_BYTES: usize = 8 * 1024 * 1024;
    const STALLED: usize = 3;
    stack.fake.set_text(&"x".repeat(TEXT_BYTES));
    let user = unique_user("fault_slow_sse");
    let other = unique_user("fault_slow_sse_other");

    async fn latencies(gw: &Gateway, user: &str, n: usize) -> Vec<Duration> {
        let mut all = Vec::new();
        for _ in 0..n {
            let started = Instant::now();
            let response = gw
                .get("/api/ai/usage", user)
                .timeout(CLIENT_DEADLINE)
                .send()
                .await
                .expect("a request beside the stalled streams got no answer");
            assert_eq!(response.status(), 200);
            all.push(started.elapsed());
        }
        all.sort();
        all
    }
    let median = |v: &[Duration]| v[v.len() / 2];
    let before = latencies(gw, &other, 30).await;
    let normal = Duration::from_millis(250) + median(&before) * 5;

    // More stalled streams than the gateway has workers (2), and together holding more than
    // the default HTTP/2 connection window (5 MiB) of the gateway's one connection to ai-service.
    let mut stalled = Vec::new();
    for n in 0..STALLED {
        stalled.push(open_unread_stream(gw, &user, n).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack.fake.calls() < STALLED {
        assert!(Instant::now() < deadline, "the streams did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // While the streams' data is still being pushed into every buffer on the way, the two cores
    // are busy (debug build) and other requests are slower; once the buffers are full, they must
    // be back to normal. A request stuck behind the stalled streams would never be answered.
    let stalled_at = Instant::now();
    let mut worst = Duration::ZERO;
    let settled = loop {
        let batch = latencies(gw, &other, 10).await;
        worst = worst.max(*batch.last().unwrap());
        if median(&batch) < normal {
            break stalled_at.elapsed();
        }
        assert!(
            stalled_at.elapsed() < Duration::from_secs(40),
            "other requests stayed slow: median {:?} against {:?} before",
            median(&batch),
            median(&before)
        );
    };
    let during = latencies(gw, &other, 30).await;
    eprintln!(
        "usage reads: median {:?} / max {:?} before; {STALLED} stalled {} MB streams: slowest \
         read {worst:?} while they filled the buffers, back to normal after {settled:?}, then \
         median {:?} / max {:?}",
        median(&before),
        before.last().unwrap(),
        TEXT_BYTES >> 20,
        median(&during),
        during.last().unwrap()
    );
    assert!(worst < Duration::from_secs(10), "a read waited {worst:?}");
    assert!(
        median(&during) < normal,
        "other requests slowed down: {:?} vs {:?}",
        median(&during),
        median(&before)
    );

    // The stalled streams are intact: one of them, read now, delivers all its text and ends.
    // (ai-service may have finished its side already: the gateway reads a frame or two ahead of
    // a stalled client, here 2 MiB each.)
    let mut stream = stalled.pop().unwrap();
    let mut received = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
            let tail = &received[received.len().saturating_sub(64 * 1024)..];
            if received.ends_with(b"\n\n") && find(tail, b"event: done").is_some() {
                break;
            }
        }
    })
    .await;
    assert!(
        read_all.is_ok(),
        "the stalled stream did not finish once read"
    );
    let x_count = received.iter().filter(|&&b| b == b'x').count();
    assert!(x_count >= TEXT_BYTES, "got {x_count} bytes of text");
    drop(stalled);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
