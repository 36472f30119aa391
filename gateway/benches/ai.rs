//! What the gateway and ai-service add to an AI call, at a steady request rate.
//!
//! One process, four parts on loopback, each on its own threads: a fake Anthropic provider
//! answering after a fixed latency, the real ai-service (SQLite ledger, in-memory prompt cache),
//! the real gateway (HS256 auth, rate limits off), and an open-loop load generator that starts
//! one request every 1/rate seconds whatever the previous ones are doing, and measures each from
//! the moment it was due (so a stall shows up as latency instead of as fewer requests).
//!
//! Phases, each at the same rate and length:
//! 1. `complete` straight to the provider (the baseline), then through the gateway: added
//!    latency = gateway percentile − baseline percentile; also, per request, client latency −
//!    the provider time the gateway reports in `Server-Timing`.
//! 2. Streaming `generate`: time to the first streamed byte of the body from the provider
//!    directly, then through the gateway (`Accept: text/event-stream`).
//!
//! ```text
//! cargo bench -p gateway --bench ai
//! AI_BENCH_RATE=1000 AI_BENCH_SECS=10 AI_BENCH_PROVIDER_MS=20 cargo bench -p gateway --bench ai
//! AI_BENCH_DATABASE_URL=postgres://… cargo bench -p gateway --bench ai   # ledger on PostgreSQL
//! ```
//!
//! Every prompt is unique, so the prompt cache never answers: each call reaches the provider.
//! The load is bounded: rate × seconds requests per phase, on 127.0.0.1 only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use serde_json::{Value, json};

const SECRET: &str = "bench-secret-that-is-at-least-32-bytes-long";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `make(listener)` on a thread with its own runtime of `threads` workers.
fn spawn_server<F, Fut>(threads: usize, make: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            make(listener).await;
        });
    });
    addr
}

// ---- the fake provider -------------------------------------------------------------------------

const TEXT: [&str; 4] = ["```python\n", "return a", " + b", "\n```"];

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Anthropic Messages: JSON after the fixed latency, or SSE whose head, `message_start` and first
/// delta come together after the fixed latency, the other deltas 2 ms apart.
async fn messages(latency: web::Data<Duration>, body: web::Json<Value>) -> HttpResponse {
    tokio::time::sleep(**latency).await;
    let usage = json!({"input_tokens": 20, "output_tokens": 6});
    if body["stream"] != json!(true) {
        return HttpResponse::Ok().json(json!({
            "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
            "content": [{"type": "text", "text": TEXT.concat()}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        }));
    }
    let events = async_stream::stream! {
        let mut head = Vec::new();
        head.extend_from_slice(&sse("message_start", &json!({"type": "message_start", "message": {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
            "content": [], "stop_reason": null, "usage": {"input_tokens": 20, "output_tokens": 1}}})));
        head.extend_from_slice(&sse("content_block_start", &json!({"type": "content_block_start",
            "index": 0, "content_block": {"type": "text", "text": ""}})));
        for (i, piece) in TEXT.iter().enumerate() {
            let delta = sse("content_block_delta", &json!({"type": "content_block_delta",
                "index": 0, "delta": {"type": "text_delta", "text": piece}}));
            if i == 0 {
                head.extend_from_slice(&delta);
                yield Ok::<_, actix_web::Error>(Bytes::from(std::mem::take(&mut head)));
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
                yield Ok(delta);
            }
        }
        let mut tail = Vec::new();
        tail.extend_from_slice(&sse("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
        tail.extend_from_slice(&sse("message_delta", &json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 6}})));
        tail.extend_from_slice(&sse("message_stop", &json!({"type": "message_stop"})));
        yield Ok(Bytes::from(tail));
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(events)
}

fn start_provider(latency: Duration) -> SocketAddr {
    spawn_server(1, move |listener| async move {
        let listener = listener.into_std().expect("std listener");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(latency))
                .app_data(web::JsonConfig::default().limit(1 << 20))
                .route("/v1/messages", web::post().to(messages))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let _ = server.await;
    })
}

// ---- ai-service and gateway --------------------------------------------------------------------

fn start_ai_service(provider: SocketAddr, data: &std::path::Path) -> SocketAddr {
    // AI_BENCH_DATABASE_URL puts the usage ledger elsewhere (e.g. PostgreSQL) than SQLite.
    let url = std::env::var("AI_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| service_runtime::db::sqlite_url(data, "ai.db"));
    let mut config = ai_service::Config::new(url);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    config.provider = Some(ai_service::ProviderConfig::anthropic(
        format!("http://{provider}"),
        "sk-bench",
    ));
    spawn_server(2, move |listener| async move {
        if let Err(e) = ai_service::run(config, listener, std::future::pending()).await {
            eprintln!("ai-service ended: {e:#}");
        }
    })
}

fn start_gateway(ai: SocketAddr, data: &std::path::Path) -> SocketAddr {
    let mut config = gateway::Config::new(gateway::config::AuthConfig::hs256(SECRET));
    config.signing_key = Some(service_runtime::testing::signing_key().clone());
    config.workers = 2;
    config.services.ai = format!("http://{ai}");
    config.limits.enabled = false;
    config.database_url =
        secrecy::SecretString::from(service_runtime::db::sqlite_url(data, "gateway.db"));
    spawn_server(1, move |listener| async move {
        if let Err(e) = gateway::run(config, listener, std::future::pending()).await {
            eprintln!("gateway ended: {e:#}");
        }
    })
}

// ---- load generation ---------------------------------------------------------------------------

/// One finished request: latency from when it was due, the provider time reported in
/// `Server-Timing` (gateway calls only), and whether it succeeded.
struct Sample {
    latency_ms: f64,
    provider_ms: Option<f64>,
    ok: bool,
    status: u16,
}

/// Starts `rate × secs` requests, one every 1/rate s, and waits for them all.
async fn open_loop<F, Fut>(rate: u64, secs: u64, request: F) -> (Vec<Sample>, f64)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = (u16, Option<f64>)> + Send + 'static,
{
    let total = rate * secs;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * u32::try_from(i).expect("bounded count");
        tokio::time::sleep_until(due).await;
        let call = request(i);
        tasks.push(tokio::spawn(async move {
            let (status, provider_ms) = call.await;
            Sample {
                latency_ms: (tokio::time::Instant::now() - due).as_secs_f64() * 1000.0,
                provider_ms,
                ok: status == 200,
                status,
            }
        }));
    }
    let sent_over = (tokio::time::Instant::now() - start).as_secs_f64();
    let mut samples = Vec::with_capacity(tasks.len());
    for t in tasks {
        samples.push(t.await.expect("request task"));
    }
    (samples, total as f64 / sent_over)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Summary {
    p50: f64,
    p99: f64,
    max: f64,
    errors: usize,
    count: usize,
}

fn summarize(values: impl Iterator<Item = f64>, errors: usize) -> Summary {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    Summary {
        p50: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
        errors,
        count: v.len(),
    }
}

fn report(name: &str, rate: f64, s: &Summary) {
    println!(
        "{name:<44} sent {rate:>6.0}/s  ok={:<6} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>9.3} ms  failed {}",
        s.count, s.p50, s.p99, s.max, s.errors
    );
}

/// How many requests failed with each status (0: no HTTP answer).
fn failures(samples: &[Sample]) -> String {
    let mut by = std::collections::BTreeMap::<u16, usize>::new();
    for s in samples.iter().filter(|s| !s.ok) {
        *by.entry(s.status).or_default() += 1;
    }
    by.iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn server_timing_provider(response: &reqwest::Response) -> Option<f64> {
    let value = response.headers().get("server-timing")?.to_str().ok()?;
    value.split(',').find_map(|m| {
        let mut parts = m.trim().split(';');
        (parts.next()? == "provider").then_some(())?;
        parts.find_map(|p| p.strip_prefix("dur=")?.parse().ok())
    })
}

/// Sends `request` and reads the body to its end; returns (HTTP status, provider time), status 0
/// when the exchange itself failed.
async fn whole(request: reqwest::RequestBuilder) -> (u16, Option<f64>) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let provider = server_timing_provider(&response);
            match response.bytes().await {
                Ok(_) => (status, provider),
                Err(_) => (0, provider),
            }
        }
        Err(_) => (0, None),
    }
}

/// Sends `request` and waits for the first byte of the body; returns (HTTP status, None). The
/// rest of the body is read in the background so that the stream ends normally.
async fn first_byte(request: reqwest::RequestBuilder) -> (u16, Option<f64>) {
    match request.send().await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let first = response.chunk().await;
            tokio::spawn(async move { while let Ok(Some(_)) = response.chunk().await {} });
            (
                if matches!(first, Ok(Some(_))) {
                    status
                } else {
                    0
                },
                None,
            )
        }
        Err(_) => (0, None),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn main() {
    let rate: u64 = env_or("AI_BENCH_RATE", 1000).clamp(1, 5000);
    let secs: u64 = env_or("AI_BENCH_SECS", 10).clamp(1, 60);
    let latency = Duration::from_millis(env_or("AI_BENCH_PROVIDER_MS", 20));
    println!(
        "AI bench: {rate} req/s for {secs} s per phase, provider latency {} ms, ledger on {}; {}",
        latency.as_millis(),
        if std::env::var("AI_BENCH_DATABASE_URL").is_ok() {
            "the given database"
        } else {
            "SQLite"
        },
        machine()
    );

    let data = service_runtime::testing::TempDir::new();
    let provider = start_provider(latency);
    let ai = start_ai_service(provider, &data.path);
    let gateway = start_gateway(ai, &data.path);
    let token = gateway::auth::issue_dev_token(SECRET, "bench-user", Duration::from_secs(3600))
        .expect("token");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let http = service_runtime::tls::http_client()
            .pool_max_idle_per_host(4096)
            .tcp_nodelay(true)
            .build()
            .expect("client");
        let gw = format!("http://{gateway}");
        let direct = format!("http://{provider}/v1/messages");
        for _ in 0..200 {
            if http.get(format!("{gw}/health")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let run = Arc::new(AtomicU64::new(0));

        let complete = {
            let (http, gw, token, run) = (http.clone(), gw.clone(), token.clone(), run.clone());
            move |i: u64| {
                let n = run.load(Ordering::Relaxed);
                whole(
                    http.post(format!("{gw}/api/ai/complete"))
                        .bearer_auth(&token)
                        .json(&json!({"prefix": format!("# run {n} call {i}\ndef add(a, b):\n    "), "language": "python"})),
                )
            }
        };
        let complete_direct = {
            let (http, direct, run) = (http.clone(), direct.clone(), run.clone());
            move |i: u64| {
                let n = run.load(Ordering::Relaxed);
                whole(http.post(&direct).json(&json!({
                    "model": "claude-bench", "max_tokens": 256,
                    "system": "Complete the code at the cursor.",
                    "messages": [{"role": "user", "content": format!("# run {n} call {i}\ndef add(a, b):\n    ")}],
                })))
            }
        };
        let stream = {
            let (http, gw, token, run) = (http.clone(), gw.clone(), token.clone(), run.clone());
            move |i: u64| {
                let n = run.load(Ordering::Relaxed);
                first_byte(
                    http.post(format!("{gw}/api/ai/generate"))
                        .bearer_auth(&token)
                        .header("accept", "text/event-stream")
                        .json(&json!({"prompt": format!("add two numbers, run {n} call {i}"), "language": "python"})),
                )
            }
        };
        let stream_direct = {
            let (http, direct, run) = (http.clone(), direct.clone(), run.clone());
            move |i: u64| {
                let n = run.load(Ordering::Relaxed);
                first_byte(http.post(&direct).json(&json!({
                    "model": "claude-bench", "max_tokens": 4096, "stream": true,
                    "messages": [{"role": "user", "content": format!("add two numbers, run {n} call {i}")}],
                })))
            }
        };

        // Warm-up: connections, SQLite pages, caches of the allocator; not reported.
        run.store(1, Ordering::Relaxed);
        open_loop(rate, 2.min(secs), &complete).await;
        open_loop(rate, 1, &stream).await;

        run.store(2, Ordering::Relaxed);
        let (base, base_rate) = open_loop(rate, secs, &complete_direct).await;
        let (via, via_rate) = open_loop(rate, secs, &complete).await;
        let (sbase, sbase_rate) = open_loop(rate, secs, &stream_direct).await;
        let (svia, svia_rate) = open_loop(rate, secs, &stream).await;

        let errors = |s: &[Sample]| s.iter().filter(|s| !s.ok).count();
        let ok = |s: &[Sample]| s.iter().filter(|s| s.ok).map(|s| s.latency_ms).collect::<Vec<_>>();
        let base_s = summarize(ok(&base).into_iter(), errors(&base));
        let via_s = summarize(ok(&via).into_iter(), errors(&via));
        let own_s = summarize(
            via.iter()
                .filter(|s| s.ok)
                .filter_map(|s| Some(s.latency_ms - s.provider_ms?)),
            0,
        );
        let sbase_s = summarize(ok(&sbase).into_iter(), errors(&sbase));
        let svia_s = summarize(ok(&svia).into_iter(), errors(&svia));

        println!();
        report("complete, provider directly", base_rate, &base_s);
        report("complete, through gateway + ai-service", via_rate, &via_s);
        report("  client latency - Server-Timing provider", via_rate, &own_s);
        report("stream first byte, provider directly", sbase_rate, &sbase_s);
        report("stream first byte, through gateway", svia_rate, &svia_s);
        for (name, samples) in [("complete", &via), ("stream", &svia)] {
            if samples.iter().any(|s| !s.ok) {
                println!("failed {name} calls by status: {}", failures(samples));
            }
        }
        println!();
        println!(
            "ADDED complete p50 {:.3} ms p99 {:.3} ms (target 1 / 3); first byte p50 {:.3} ms p99 {:.3} ms (target 2)",
            via_s.p50 - base_s.p50,
            via_s.p99 - base_s.p99,
            svia_s.p50 - sbase_s.p50,
            svia_s.p99 - sbase_s.p99,
        );
    });
    // The servers run on detached threads; ending the process ends them.
    drop(data);
}
