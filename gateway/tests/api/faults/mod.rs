//! Fault injection against real components: a service killed under load, PostgreSQL restarted
//! under write load, Redis gone (fail-open and fail-closed), the AI provider overloaded, and a
//! client that stops reading an event stream. Each test counts what the clients were told and
//! checks afterwards that nothing acknowledged was lost.
//!
//! The PostgreSQL and Redis servers restarted here are private to the test (a fresh cluster in a
//! temporary directory, a redis-server on a free port): the suite's shared servers keep serving
//! the tests running beside these.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ai_service::{ProviderConfig, RetryPolicy, Timeouts};
use fake_providers::ai::{FakeProvider, KEY, Reply};
use serde_json::{Value, json};
use service_runtime::testing::{TempDir, fresh_sqlite_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `command`, panicking with its output when it fails.
fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

mod ai;
mod private_servers;
mod redis;
mod services;

pub(crate) use ai::open_unread_stream;
use private_servers::{PrivatePostgres, PrivateRedis};

/// What one request of a load got.
#[derive(Debug, Clone)]
struct Outcome {
    /// What was asked, e.g. `PUT w1/7.txt`.
    what: String,
    /// The file written and its content, for writes.
    write: Option<(String, String)>,
    /// The status, or `None` when the client gave up (the request hung).
    status: Option<u16>,
    content_type: String,
    detail: String,
    elapsed: Duration,
}

impl Outcome {
    fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// How long a load's client waits for one answer before calling the request hung.
const CLIENT_DEADLINE: Duration = Duration::from_secs(15);

async fn outcome(
    what: String,
    write: Option<(String, String)>,
    request: reqwest::RequestBuilder,
) -> Outcome {
    let started = Instant::now();
    match request.timeout(CLIENT_DEADLINE).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = response.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_string))
                .unwrap_or_default();
            Outcome {
                what,
                write,
                status: Some(status),
                content_type,
                detail,
                elapsed: started.elapsed(),
            }
        }
        Err(e) => Outcome {
            what,
            write,
            status: None,
            content_type: String::new(),
            detail: e.to_string(),
            elapsed: started.elapsed(),
        },
    }
}

/// `writers` tasks writing files of project `id` (each a new path with its own content) and
/// `readers` tasks reading the project, until `stop` is set.
fn start_load(
    gw: &Gateway,
    user: &str,
    id: &str,
    writers: usize,
    readers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    let mut tasks = Vec::new();
    for w in 0..writers + readers {
        let http = gw.http.clone();
        let base = gw.base.clone();
        let token = token(user);
        let id = id.to_string();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let result = if w < writers {
                    let path = format!("w{w}/{i}.txt");
                    let content = format!("writer {w}, write {i}, {}", uuid::Uuid::new_v4());
                    let request = http
                        .put(format!("{base}/api/projects/{id}/files/{path}"))
                        .bearer_auth(&token)
                        .json(&json!({ "content": content }));
                    outcome(format!("PUT {path}"), Some((path, content)), request).await
                } else {
                    let request = http
                        .get(format!("{base}/api/projects/{id}"))
                        .bearer_auth(&token);
                    outcome("GET project".into(), None, request).await
                };
                outcomes.push(result);
                // Paced a little, so the two cores also serve the test's own probes.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        }));
    }
    tasks
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// Reads back every acknowledged write; returns how many are missing or different (what was
/// lost) and how many refused writes are present all the same (the crash cut the answer, not
/// the write).
async fn verify_writes(gw: &Gateway, user: &str, id: &str, outcomes: &[Outcome]) -> (usize, usize) {
    let mut lost = Vec::new();
    let mut refused_but_present = 0;
    for o in outcomes {
        let Some((path, content)) = &o.write else {
            continue;
        };
        let response = gw
            .get(&format!("/api/projects/{id}/files/{path}"), user)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let present = status == 200 && {
            let file: Value = response.json().await.unwrap();
            file["content"] == content.as_str()
        };
        assert!(
            present || status == 404,
            "reading {path} back gave {status}"
        );
        if o.acknowledged() && !present {
            lost.push(path.clone());
        }
        if !o.acknowledged() && present {
            refused_but_present += 1;
        }
    }
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    (lost.len(), refused_but_present)
}

fn summary(outcomes: &[Outcome]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for o in outcomes {
        let key = o
            .status
            .map_or_else(|| "no answer".to_string(), |s| s.to_string());
        *counts.entry(key).or_insert(0) += 1;
    }
    let slowest = outcomes.iter().map(|o| o.elapsed).max().unwrap_or_default();
    format!("{counts:?}, slowest answer {slowest:?}")
}

async fn ready_detail(gw: &Gateway) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = gw.http.get(gw.url("/ready")).send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let text = if status == 200 {
        body.to_string()
    } else {
        body["detail"].as_str().unwrap_or_default().to_string()
    };
    (status, text, started.elapsed())
}

/// Waits until `GET /api/projects/{id}` answers 200 again; returns how long that took.
async fn wait_for_recovery(gw: &Gateway, user: &str, id: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let response = gw
            .get(&format!("/api/projects/{id}"), user)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no recovery within {within:?}: still {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
