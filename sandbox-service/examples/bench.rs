//! Benchmark: hello world through a plain `docker run --rm` with the sandbox's flags (the floor
//! for a fresh container), through sandbox-service without a pool, with a warm pool sized for
//! the cell, with the default pool of 2 per language run back to back (it drains), and, when a
//! gateway is given, with a warm pool through the gateway's `POST /api/sandbox/execute`; for
//! JavaScript and Python at concurrency 1 and 4. Prints a Markdown table.
//!
//! Run with `bash deploy/bench/sandbox.sh` (release build, starts the gateway, writes
//! docs/benchmarks/sandbox.md), or `cargo run --release -p sandbox-service --example bench -- [runs per cell]`.
//! Gateway cells need `BENCH_GATEWAY_URL`, `BENCH_TOKEN` and `BENCH_GATEWAY_INSTANCE` (the
//! `SANDBOX_INSTANCE` of the sandbox-service behind that gateway, whose pool is watched).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autocrea_proto::sandbox::v1::ExecuteRequest;
use autocrea_proto::sandbox::v1::sandbox_service_client::SandboxServiceClient;
use bollard::query_parameters::ListContainersOptionsBuilder;
use sandbox_service::Config;
use sandbox_service::engine::OWNER_LABEL;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tonic::transport::Channel;

const LANGUAGES: [(&str, &str, [&str; 3]); 2] = [
    (
        "javascript",
        "console.log('hello')",
        ["node", "-e", "console.log('hello')"],
    ),
    (
        "python",
        "print('hello')",
        ["python3", "-c", "print('hello')"],
    ),
];
const CONCURRENCY: [usize; 2] = [1, 4];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_runtime::telemetry::init("sandbox-bench")?;
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(40);
    let base = Config {
        max_concurrent_runs: 8,
        queue_limit: 64,
        caller_keys: Some(service_runtime::testing::caller_keys()),
        ..Config::default()
    };
    // BENCH_ONLY=<text>: only the paths whose name contains it (e.g. `warm`).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |path: &str| path.contains(only.as_str());
    println!("| path | language | concurrency | runs | p50 ms | p95 ms | runs/s | failed |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");

    for (language, _, argv) in LANGUAGES {
        for concurrency in CONCURRENCY {
            if !wanted("docker run --rm") {
                continue;
            }
            let image = base.clone();
            let stats = measure(runs, concurrency, move || {
                let config = image.clone();
                async move { docker_run(&config, &argv).await }
            })
            .await;
            row("docker run --rm", language, concurrency, runs, &stats);
        }
    }

    // Pool sizes per language: none; enough warm containers for a whole cell (warm-up included);
    // the default 2, drained by back-to-back runs, which then create containers on the spot.
    let sized = runs + 1;
    for (label, size) in [
        ("sandbox, no pool", 0),
        ("sandbox, warm pool", sized),
        ("sandbox, pool of 2, back to back", 2),
    ] {
        if !wanted(label) {
            continue;
        }
        let config = Config {
            pool_size: 0,
            pool_sizes: vec![("javascript".into(), size), ("python".into(), size)],
            instance: format!("bench-{size}"),
            ..base.clone()
        };
        let instance = config.instance.clone();
        let (client, stop, server) = start(config).await?;
        for (language, code, _) in LANGUAGES {
            for concurrency in CONCURRENCY {
                if size > 0 {
                    // As a service that has been up a while: every pool full before the cell.
                    wait_for_pool(&instance, 2 * size).await;
                }
                let client = client.clone();
                let stats = measure(runs, concurrency, move || {
                    let mut client = client.clone();
                    async move { execute(&mut client, language, code).await }
                })
                .await;
                row(label, language, concurrency, runs, &stats);
            }
        }
        let _ = stop.send(());
        server.await??;
    }

    if !wanted("gateway → sandbox, warm pool") {
        return Ok(());
    }
    if let (Ok(url), Ok(token), Ok(instance)) = (
        std::env::var("BENCH_GATEWAY_URL"),
        std::env::var("BENCH_TOKEN"),
        std::env::var("BENCH_GATEWAY_INSTANCE"),
    ) {
        let pool: usize = std::env::var("BENCH_GATEWAY_POOL")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(sized);
        let gateway = Arc::new(Gateway::new(&url, &token)?);
        for (language, code, _) in LANGUAGES {
            for concurrency in CONCURRENCY {
                wait_for_pool(&instance, 2 * pool).await;
                let gateway = gateway.clone();
                let stats = measure(runs, concurrency, move || {
                    let gateway = gateway.clone();
                    async move { gateway.execute(language, code).await }
                })
                .await;
                row(
                    "gateway → sandbox, warm pool",
                    language,
                    concurrency,
                    runs,
                    &stats,
                );
            }
        }
        // One run a second: the pool's refills and removals keep up, as under moderate traffic.
        for (language, code, _) in LANGUAGES {
            wait_for_pool(&instance, 2 * pool).await;
            let gateway = gateway.clone();
            let stats = measure_paced(runs, PACE, move || {
                let gateway = gateway.clone();
                async move { gateway.execute(language, code).await }
            })
            .await;
            row(
                "gateway → sandbox, warm pool, 1 run/s",
                language,
                1,
                runs,
                &stats,
            );
        }
    }
    Ok(())
}

/// Interval between the starts of paced runs.
const PACE: Duration = Duration::from_secs(1);

/// Latencies of `runs` calls of `one`, one at a time, each starting `interval` after the
/// previous one started (or at once when it took longer); wall time as in [`measure`].
async fn measure_paced<F, Fut>(runs: usize, interval: Duration, one: F) -> Stats
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let _ = one().await;
    let mut failed = 0;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        ticks.tick().await;
        let t = Instant::now();
        match one().await {
            Ok(()) => latencies.push(t.elapsed()),
            Err(e) => {
                eprintln!("run failed: {e}");
                failed += 1;
            }
        }
    }
    let wall = started.elapsed();
    latencies.sort();
    (latencies, wall, failed)
}

/// Waits until `instance` owns `n` containers (its pools are full and no run is in flight).
async fn wait_for_pool(instance: &str, n: usize) {
    let docker = bollard::Docker::connect_with_defaults().expect("Docker client");
    let filters = HashMap::from([("label", vec![format!("{OWNER_LABEL}={instance}")])]);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let options = ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        let running = docker
            .list_containers(Some(options))
            .await
            .map_or(0, |c| c.len());
        if running >= n || Instant::now() > deadline {
            // Let the last container's interpreter settle.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Latencies of `runs` calls of `one`, `concurrency` at a time, and the wall time of them all.
/// One warm-up call first, not counted.
async fn measure<F, Fut>(runs: usize, concurrency: usize, one: F) -> Stats
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _ = one().await;
    let remaining = Arc::new(Mutex::new(runs));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(runs)));
    let one = Arc::new(one);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (remaining, latencies, one) = (remaining.clone(), latencies.clone(), one.clone());
            let failed = failed.clone();
            tokio::spawn(async move {
                loop {
                    {
                        let mut left = remaining.lock().await;
                        if *left == 0 {
                            return;
                        }
                        *left -= 1;
                    }
                    let t = Instant::now();
                    match one().await {
                        Ok(()) => latencies.lock().await.push(t.elapsed()),
                        Err(e) => {
                            eprintln!("run failed: {e}");
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let wall = started.elapsed();
    let mut latencies = std::mem::take(&mut *latencies.lock().await);
    latencies.sort();
    (
        latencies,
        wall,
        failed.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// Sorted latencies of the successful runs, wall time of the cell, failed runs.
type Stats = (Vec<Duration>, Duration, usize);

fn row(path: &str, language: &str, concurrency: usize, runs: usize, stats: &Stats) {
    let (latencies, wall, failed) = stats;
    let pct = |p: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "| {path} | {language} | {concurrency} | {runs} | {:.0} | {:.0} | {:.1} | {failed} |",
        pct(0.50),
        pct(0.95),
        runs as f64 / wall.as_secs_f64()
    );
}

/// `docker run --rm` with the flags sandbox-service gives its containers.
async fn docker_run(config: &Config, argv: &[&str]) -> Result<(), String> {
    let l = &config.limits;
    let tmpfs = format!("rw,nosuid,nodev,size={},mode=1777", l.tmpfs_bytes);
    let output = tokio::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--read-only",
            "--network",
            "none",
            "--cap-drop",
            "ALL",
        ])
        .args([
            "--security-opt",
            "no-new-privileges",
            "--init",
            "--log-driver",
            "none",
        ])
        .args(["--user", &config.user, "--workdir", "/work"])
        .args([
            "--tmpfs",
            &format!("/work:{tmpfs}"),
            "--tmpfs",
            &format!("/tmp:{tmpfs}"),
        ])
        .args(["--memory", &l.memory_bytes.to_string()])
        .args(["--memory-swap", &l.memory_bytes.to_string()])
        .args(["--cpus", &format!("{}", l.nano_cpus as f64 / 1e9)])
        .args(["--pids-limit", &l.pids.to_string()])
        .args(["--ulimit", &format!("nofile={0}:{0}", l.open_files)])
        .args(["--ulimit", &format!("fsize={0}:{0}", l.file_size_bytes)])
        .args(["--label", "org.autocrea.sandbox=bench"])
        .arg(&config.image)
        .args(argv)
        .output()
        .await
        .map_err(|e| format!("docker run: {e}"))?;
    if output.stdout != b"hello\n" {
        return Err(format!("docker run: {output:?}"));
    }
    Ok(())
}

async fn execute(
    client: &mut SandboxServiceClient<Channel>,
    language: &str,
    code: &str,
) -> Result<(), String> {
    let mut request = tonic::Request::new(ExecuteRequest {
        language: language.into(),
        code: code.into(),
        ..Default::default()
    });
    service_runtime::identity::attach(
        &mut request,
        service_runtime::identity::ASSERTION,
        &service_runtime::testing::assertion(
            service_runtime::testing::signing_key(),
            "bench",
            &[service_runtime::identity::audience::SANDBOX],
            std::time::Duration::from_secs(60),
        ),
    );
    let result = client
        .execute(request)
        .await
        .map_err(|e| format!("execute: {e:?}"))?
        .into_inner();
    if result.stdout != "hello\n" {
        return Err(format!("execute: {result:?}"));
    }
    Ok(())
}

/// A minimal HTTP/1.1 client for the gateway: one keep-alive connection per concurrent caller,
/// so that what is measured is the gateway and the services, not a client library.
struct Gateway {
    addr: String,
    host: String,
    token: String,
    idle: std::sync::Mutex<Vec<BufReader<TcpStream>>>,
}

impl Gateway {
    fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("BENCH_GATEWAY_URL must be http://host:port"))?
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            addr: host.clone(),
            host,
            token: token.to_string(),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn execute(&self, language: &str, code: &str) -> Result<(), String> {
        let idle = self.idle.lock().expect("idle connections").pop();
        // A kept-alive connection may have been closed by the gateway while idle: retry anew.
        let (status, body, conn) = match idle {
            Some(conn) => match self.exchange(conn, language, code).await {
                Ok(answer) => answer,
                Err(_) => self.exchange(self.connect().await?, language, code).await?,
            },
            None => self.exchange(self.connect().await?, language, code).await?,
        };
        self.idle.lock().expect("idle connections").push(conn);
        if status.starts_with("HTTP/1.1 200") && body.contains(r#""stdout":"hello\n""#) {
            Ok(())
        } else {
            Err(format!("gateway: {} {body}", status.trim_end()))
        }
    }

    async fn connect(&self) -> Result<BufReader<TcpStream>, String> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(BufReader::new(stream))
    }

    async fn exchange(
        &self,
        mut conn: BufReader<TcpStream>,
        language: &str,
        code: &str,
    ) -> Result<(String, String, BufReader<TcpStream>), String> {
        let io = |e: std::io::Error| format!("gateway connection: {e}");
        let body = format!("{{\"language\":\"{language}\",\"code\":\"{code}\"}}");
        let request = format!(
            "POST /api/sandbox/execute HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        );
        conn.get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(io)?;
        let mut status = String::new();
        if conn.read_line(&mut status).await.map_err(io)? == 0 {
            return Err("gateway closed the connection".into());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await.map_err(io)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().map_err(|_| "bad content length")?;
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await.map_err(io)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned(), conn))
    }
}

type Server = tokio::task::JoinHandle<anyhow::Result<()>>;

async fn start(
    config: Config,
) -> anyhow::Result<(
    SandboxServiceClient<Channel>,
    tokio::sync::oneshot::Sender<()>,
    Server,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sandbox_service::run(config, listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok((SandboxServiceClient::new(channel), stop, server))
}
