//! Benchmark: hello world through a plain `docker run --rm` with the sandbox's flags (the floor
//! for a fresh container), through sandbox-service without a pool, and with a warm pool; for
//! JavaScript and Python at concurrency 1 and 4. Prints a Markdown table.
//!
//! Run with `bash sandbox-service/bench.sh` (release build, writes BENCHMARK.md), or
//! `cargo run --release -p sandbox-service --example bench -- [runs per cell, default 40]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use autocrea_proto::sandbox::v1::ExecuteRequest;
use autocrea_proto::sandbox::v1::sandbox_service_client::SandboxServiceClient;
use sandbox_service::Config;
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
        ..Config::default()
    };
    println!("| path | language | concurrency | runs | p50 ms | p95 ms | runs/s |");
    println!("|---|---|---:|---:|---:|---:|---:|");

    for (language, _, argv) in LANGUAGES {
        for concurrency in CONCURRENCY {
            let image = base.clone();
            let stats = measure(runs, concurrency, move || {
                let config = image.clone();
                async move { docker_run(&config, &argv).await }
            })
            .await;
            row("docker run --rm", language, concurrency, runs, &stats);
        }
    }
    for (label, pool_size) in [("sandbox, no pool", 0), ("sandbox, warm pool", 4)] {
        let config = Config {
            pool_size,
            instance: format!("bench-{pool_size}"),
            ..base.clone()
        };
        let (client, stop, server) = start(config).await?;
        if pool_size > 0 {
            // Let the pool fill before measuring, as a service that has been up a while would.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        for (language, code, _) in LANGUAGES {
            for concurrency in CONCURRENCY {
                let client = client.clone();
                let stats = measure(runs, concurrency, move || {
                    let mut client = client.clone();
                    async move { execute(&mut client, language, code).await }
                })
                .await;
                row(label, language, concurrency, runs, &stats);
                if pool_size > 0 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            }
        }
        let _ = stop.send(());
        server.await??;
    }
    Ok(())
}

/// Latencies of `runs` calls of `one`, `concurrency` at a time, and the wall time of them all.
async fn measure<F, Fut>(runs: usize, concurrency: usize, one: F) -> (Vec<Duration>, Duration)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    // One warm-up run, not counted.
    one().await;
    let remaining = Arc::new(Mutex::new(runs));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(runs)));
    let one = Arc::new(one);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (remaining, latencies, one) = (remaining.clone(), latencies.clone(), one.clone());
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
                    one().await;
                    latencies.lock().await.push(t.elapsed());
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
    (latencies, wall)
}

fn row(
    path: &str,
    language: &str,
    concurrency: usize,
    runs: usize,
    stats: &(Vec<Duration>, Duration),
) {
    let (latencies, wall) = stats;
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "| {path} | {language} | {concurrency} | {runs} | {:.0} | {:.0} | {:.1} |",
        pct(0.50),
        pct(0.95),
        runs as f64 / wall.as_secs_f64()
    );
}

/// `docker run --rm` with the flags sandbox-service gives its containers.
async fn docker_run(config: &Config, argv: &[&str]) {
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
        .expect("docker run");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello\n",
        "{output:?}"
    );
}

async fn execute(client: &mut SandboxServiceClient<Channel>, language: &str, code: &str) {
    let mut request = tonic::Request::new(ExecuteRequest {
        language: language.into(),
        code: code.into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        service_runtime::grpc::USER_ID,
        "bench".parse().expect("ascii"),
    );
    let result = client.execute(request).await.expect("execute").into_inner();
    assert_eq!(result.stdout, "hello\n", "{result:?}");
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
