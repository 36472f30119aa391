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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster of its own, in a temporary directory, on a free port. The binaries are
/// those of the Debian packages the test command installs (`deploy/scripts/test-services.sh`).
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    /// PostgreSQL refuses to run as root: then it runs as `postgres`.
    as_postgres: bool,
    dir: TempDir,
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect(
                "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are missing: \
                 `bash deploy/test.sh` installs them",
            );
        let dir = TempDir::new();
        let data = dir.path.join("data");
        let socket_dir = dir.path.join("run");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&socket_dir).unwrap();
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&dir.path));
        }
        let pg = Self {
            bin,
            data,
            socket_dir,
            port: free_port(),
            as_postgres,
            dir,
        };
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(&pg.data).args([
            "-U",
            "autocrea",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(&mut initdb);
        pg.start_again();
        pg
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path.join("pg.log")
    }

    /// Starts the server and waits until it accepts connections.
    fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=50 \
             -c shared_buffers=16MB",
            self.port,
            self.socket_dir.display()
        );
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "60", "start", "-o", &options]);
        let output = start.output().unwrap();
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// Stops the server the way a crash would (`immediate`: no checkpoint, recovery from the
    /// WAL on the next start).
    fn crash(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"]);
        run(&mut stop);
    }

    fn url(&self) -> String {
        format!("postgres://autocrea@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A redis-server of its own on a free port, without persistence (like the suite's).
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl PrivateRedis {
    async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
            dir: TempDir::new(),
        };
        redis.start_again().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is missing: `bash deploy/test.sh` installs it");
        self.child = Some(child);
        for _ in 0..200 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Whether it answers PING.
    async fn ping(&self) -> bool {
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await,
            Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
        )
    }

    /// Kills it with SIGKILL and waits until it is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_under_load_gives_fast_503s_and_loses_nothing_acknowledged() {
    let mut stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("fault_kill");
    let project = gw.create_project(&user, "under-load").await;
    let id = project["id"].as_str().unwrap().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(gw, &user, &id, 3, 2, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Kill project-service with calls in flight: its runtime is dropped, every connection cut.
    tokio::task::block_in_place(|| stack.project.server.stop());
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, detail, took) = ready_detail(&stack.gateway).await;
    assert_eq!(status, 503);
    assert!(detail.contains("project-service"), "{detail}");
    assert!(took < Duration::from_secs(2), "/ready took {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outage = killed.elapsed();

    stack.project.restart().await;
    let recovered = wait_for_recovery(&stack.gateway, &user, &id, Duration::from_secs(15)).await;
    let (status, detail, _) = ready_detail(&stack.gateway).await;
    assert!(!detail.contains("project-service"), "{status}: {detail}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = collect(load).await;

    let gw = &stack.gateway;
    for o in &outcomes {
        let status = o.status.unwrap_or_else(|| {
            panic!(
                "{} got no answer within {CLIENT_DEADLINE:?}: {}",
                o.what, o.detail
            )
        });
        assert!(
            matches!(status, 200 | 201 | 503),
            "{} answered {status}: {}",
            o.what,
            o.detail
        );
        if status == 503 {
            assert_eq!(o.content_type, "application/problem+json");
            assert!(o.detail.contains("project-service"), "{}", o.detail);
            // The connect timeout is 500 ms: a dead service is never waited on much longer.
            assert!(
                o.elapsed < Duration::from_secs(3),
                "{} took {:?} to fail",
                o.what,
                o.elapsed
            );
        }
    }
    let refused = outcomes.iter().filter(|o| o.status == Some(503)).count();
    let acknowledged = outcomes.iter().filter(|o| o.acknowledged()).count();
    assert!(
        refused > 0,
        "the outage was not seen: {}",
        summary(&outcomes)
    );
    let (lost, in_doubt) = verify_writes(gw, &user, &id, &outcomes).await;
    eprintln!(
        "service killed for {outage:?} under load: {} requests ({}), {acknowledged} acknowledged, \
         {refused} refused with 503; back {recovered:?} after restart; lost {lost} acknowledged \
         writes; {in_doubt} refused writes were stored anyway",
        outcomes.len(),
        summary(&outcomes)
    );
}

/// project-service on a database of the caller's choosing.
async fn project_service_on(database_url: &str) -> Server {
    let config = project_service::Config::with_database_url(database_url.to_string());
    let server = Server::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        move |listener, shutdown| async move {
            project_service::run(config, listener, async {
                let _ = shutdown.await;
            })
            .await
        },
    );
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(server.addr).await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("project-service did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_write_load_keeps_every_acknowledged_write() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let pg = Arc::new(pg);
    let project = project_service_on(&pg.url()).await;
    let mut config = gateway_config(&format!("http://{}", project.addr));
    config.limits = generous_limits();
    let gw = Gateway::start(config).await;
    let user = unique_user("fault_pg");
    let created = gw.create_project(&user, "pg-restart").await;
    let id = created["id"].as_str().unwrap().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&gw, &user, &id, 4, 1, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let restarted = Instant::now();
    let server = pg.clone();
    tokio::task::spawn_blocking(move || {
        server.crash();
        std::thread::sleep(Duration::from_millis(1000));
        server.start_again();
    })
    .await
    .unwrap();
    let down_for = restarted.elapsed();
    let recovered = wait_for_recovery(&gw, &user, &id, Duration::from_secs(20)).await;
    // Writes must succeed again too, not only reads.
    let started = Instant::now();
    loop {
        let response = gw
            .put(&format!("/api/projects/{id}/files/after.txt"), &user)
            .json(&json!({"content": "after the restart"}))
            .send()
            .await
            .unwrap();
        if response.status().is_success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "writes did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = collect(load).await;

    let mut failures = Vec::new();
    for o in &outcomes {
        let status = o.status.unwrap_or_else(|| {
            panic!(
                "{} got no answer within {CLIENT_DEADLINE:?}: {}",
                o.what, o.detail
            )
        });
        if !o.acknowledged() {
            // A clear error: problem+json, a server-side status that says to try again.
            assert_eq!(o.content_type, "application/problem+json", "{}", o.what);
            assert_eq!(status, 503, "{}: {}", o.what, o.detail);
            assert!(!o.detail.is_empty());
            failures.push(o.clone());
        }
        assert!(
            o.elapsed < Duration::from_secs(10),
            "{} took {:?}",
            o.what,
            o.elapsed
        );
    }
    let acknowledged = outcomes.iter().filter(|o| o.acknowledged()).count();
    let writes = outcomes.iter().filter(|o| o.write.is_some()).count();
    let (lost, in_doubt) = verify_writes(&gw, &user, &id, &outcomes).await;
    eprintln!(
        "PostgreSQL crashed and restarted ({down_for:?}) under write load: {} requests ({}), \
         {writes} writes, {acknowledged} acknowledged; reads back {recovered:?} after the \
         restart; lost {lost} acknowledged writes; {} failed with clear errors, {in_doubt} of \
         those stored anyway. First failure: {:?}",
        outcomes.len(),
        summary(&outcomes),
        failures.len(),
        failures.first().map(|o| &o.detail)
    );
    drop(gw);
    drop(project);
}

/// A gateway limiting through a private Redis, with the api budget at `limit` per hour.
async fn gateway_on_redis(
    redis: &PrivateRedis,
    limit: u32,
    mode: gateway::limits::RedisFailureMode,
) -> (ProjectService, Gateway) {
    let project = ProjectService::start(Db::Sqlite).await;
    let mut config = gateway_config(&project.url());
    config.limits = generous_limits();
    config.limits.api = format!("{limit}/1h").parse().unwrap();
    config.limits.redis_url = Some(redis.url().into());
    config.limits.redis_failure = mode;
    let gw = Gateway::start(config).await;
    (project, gw)
}

async fn list(gw: &Gateway, user: &str) -> (u16, Option<u32>, Duration, String) {
    let started = Instant::now();
    let response = gw
        .get("/api/projects", user)
        .timeout(CLIENT_DEADLINE)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let remaining = response
        .headers()
        .get("ratelimit-remaining")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = response.text().await.unwrap();
    (status, remaining, elapsed, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_to_the_in_process_limiter_and_recovers() {
    let mut redis = PrivateRedis::start().await;
    let (_project, gw) =
        gateway_on_redis(&redis, 30, gateway::limits::RedisFailureMode::Open).await;
    let user = unique_user("fault_redis_open");

    // Through Redis: 10 of the 30 spent.
    for expected in (20..30).rev() {
        let (status, remaining, _, body) = list(&gw, &user).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(remaining, Some(expected));
    }

    redis.kill();
    // Load while Redis is gone: every request is answered at once, and still limited, by the
    // in-process limiter, whose budget of 30 this user has not touched.
    let requests = (0..40).map(|_| list(&gw, &user));
    let answers = futures::future::join_all(requests).await;
    let served = answers.iter().filter(|a| a.0 == 200).count();
    let limited = answers.iter().filter(|a| a.0 == 429).count();
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    for (status, _, _, body) in &answers {
        assert!(matches!(status, 200 | 429), "{status}: {body}");
    }
    assert_eq!(
        served, 30,
        "the in-process budget applies while Redis is down"
    );
    assert_eq!(limited, 10);
    assert!(
        slowest < Duration::from_secs(3),
        "slowest answer {slowest:?}"
    );
    // Liveness and other users are unaffected.
    let (status, _, _, body) = list(&gw, &unique_user("fault_redis_other")).await;
    assert_eq!(status, 200, "{body}");

    redis.start_again().await;
    // Back on Redis, which restarted empty: the user's shared budget is whole again.
    let started = Instant::now();
    loop {
        let (status, remaining, _, body) = list(&gw, &user).await;
        if status == 200 && remaining == Some(29) {
            break;
        }
        assert!(
            matches!(status, 200 | 429),
            "{status} while recovering: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway did not go back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "Redis down (fail-open): {served} served and {limited} limited in process, slowest \
         {slowest:?}; back on Redis {:?} after it restarted; nothing refused with 5xx",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_with_503_when_configured_and_recovers() {
    let mut redis = PrivateRedis::start().await;
    let (_project, gw) =
        gateway_on_redis(&redis, 30, gateway::limits::RedisFailureMode::Closed).await;
    let user = unique_user("fault_redis_closed");
    let (status, remaining, _, body) = list(&gw, &user).await;
    assert_eq!((status, remaining), (200, Some(29)), "{body}");

    redis.kill();
    let requests = (0..20).map(|_| async {
        let started = Instant::now();
        let response = gw.get("/api/projects", &user).send().await.unwrap();
        let elapsed = started.elapsed();
        assert!(response.headers().contains_key("retry-after"));
        (assert_problem(response, 503).await, elapsed)
    });
    for (problem, elapsed) in futures::future::join_all(requests).await {
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("rate limiter"), "{detail}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
    let health = gw.http.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "unlimited routes still answer");

    redis.start_again().await;
    let started = Instant::now();
    loop {
        let (status, _, _, body) = list(&gw, &user).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway did not go back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "Redis down (fail-closed): 20 of 20 refused with 503; serving again {:?} after Redis \
         restarted",
        started.elapsed()
    );
}

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
    // Every caller's first attempt and two retries, no more; backing off 50 ms then 100 ms
    // (less up to 25 % jitter).
    assert_eq!(stack.fake.calls(), CALLERS * 3);
    assert!(
        fastest >= Duration::from_millis(110),
        "retries backed off: {fastest:?}"
    );
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
