//! The load client of `deploy/bench/load.sh`: an open-loop fixed-rate HTTP client, the direct
//! gRPC baseline against project-service, and the fake AI provider process the script needs
//! (development tokens come from `gateway token`). Saturation runs over HTTP use `wrk`; this client covers
//! what `wrk` cannot: a fixed request rate with every request timed from when it was *due*
//! (a stalled server shows up as latency, not as fewer requests), and gRPC.
//!
//! ```text
//! load provider                              # fake Anthropic provider; prints PROVIDER_URL / PROVIDER_KEY
//! load http --url URL [--method POST] [--body '{"name":"p{n}"}'] [--token T] --rate 2000 --secs 5
//! load grpc-get --url http://127.0.0.1:PORT --user U --id PROJECT (--rate R | --concurrency C) --secs 5
//! ```
//!
//! `{n}` in a body becomes a token unique to the request (so AI prompts never hit the prompt
//! cache). Each run prints one line: `RESULT rps=… p50_ms=… p95_ms=… p99_ms=… max_ms=…
//! requests=… errors=… statuses=…`. Every address must be on this host; the load is bounded by
//! rate × seconds (open loop) or by the seconds (closed loop).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autocrea_proto::project::v1::GetProjectRequest;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use tokio::runtime::Runtime;

/// How one request ended: `None` when it succeeded, otherwise a label (HTTP status, gRPC code or
/// transport error) for the error count.
type Outcome = Option<String>;

/// One finished request.
struct Sample {
    latency: Duration,
    failure: Outcome,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "provider" => provider(),
        "http" => http(&flags(&rest)?),
        "grpc-get" => grpc_get(&flags(&rest)?),
        _ => anyhow::bail!("usage: load provider|http|grpc-get [--flag value]…"),
    }
}

/// `--key value` pairs.
fn flags(args: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    let mut it = args.iter();
    while let Some(key) = it.next() {
        let key = key
            .strip_prefix("--")
            .ok_or_else(|| anyhow::anyhow!("expected --flag, got {key:?}"))?;
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("--{key} needs a value"))?;
        map.insert(key.to_string(), value.clone());
    }
    Ok(map)
}

fn flag<T: std::str::FromStr>(flags: &HashMap<String, String>, name: &str) -> anyhow::Result<T> {
    let raw = flags
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("--{name} is required"))?;
    raw.parse()
        .map_err(|_| anyhow::anyhow!("--{name}: cannot parse {raw:?}"))
}

fn flag_or<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
    default: T,
) -> anyhow::Result<T> {
    if flags.contains_key(name) {
        flag(flags, name)
    } else {
        Ok(default)
    }
}

fn runtime() -> anyhow::Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The fake Anthropic provider of ai-service's test suite, as a process of its own so that the
/// script can point ai-service at it and measure each process separately.
fn provider() -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let fake = fake_providers::ai::FakeProvider::start().await;
        println!("PROVIDER_URL={}", fake.url());
        println!("PROVIDER_KEY={}", fake_providers::ai::KEY);
        std::future::pending::<()>().await;
    });
    Ok(())
}

/// How the load is applied.
enum Load {
    /// `rate` requests per second for `secs`, whatever the earlier ones are doing.
    Open { rate: u64, secs: u64 },
    /// `concurrency` callers, each sending its next request when the previous one ended.
    Closed { concurrency: usize, secs: u64 },
}

impl Load {
    fn from_flags(flags: &HashMap<String, String>) -> anyhow::Result<Self> {
        let secs: u64 = flag_or(flags, "secs", 5)?;
        anyhow::ensure!((1..=120).contains(&secs), "--secs must be 1 to 120");
        if flags.contains_key("concurrency") {
            let concurrency: usize = flag(flags, "concurrency")?;
            anyhow::ensure!(
                (1..=1024).contains(&concurrency),
                "--concurrency must be 1 to 1024"
            );
            Ok(Self::Closed { concurrency, secs })
        } else {
            let rate: u64 = flag(flags, "rate")?;
            anyhow::ensure!((1..=50_000).contains(&rate), "--rate must be 1 to 50000");
            Ok(Self::Open { rate, secs })
        }
    }

    /// The same load for `secs` seconds (the warm-up).
    fn for_secs(&self, secs: u64) -> Self {
        match *self {
            Self::Open { rate, .. } => Self::Open { rate, secs },
            Self::Closed { concurrency, .. } => Self::Closed { concurrency, secs },
        }
    }
}

/// Runs `load`, each request made by `request(i)`, and returns the samples with the wall time.
fn drive<F, Fut>(rt: &Runtime, load: &Load, request: F) -> (Vec<Sample>, Duration)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let request = Arc::new(request);
    match *load {
        Load::Open { rate, secs } => {
            // Paced from this thread with the OS's sleep (tens of µs of slack) rather than the
            // runtime's millisecond timer, so that the pacing itself adds no latency.
            let total = rate * secs;
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            let start = Instant::now() + Duration::from_millis(20);
            let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            for i in 0..total {
                let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let call = request(i);
                tasks.push(rt.spawn(async move {
                    let failure = call.await;
                    Sample {
                        latency: due.elapsed(),
                        failure,
                    }
                }));
            }
            let samples = rt.block_on(async {
                let mut samples = Vec::with_capacity(tasks.len());
                for t in tasks {
                    if let Ok(s) = t.await {
                        samples.push(s);
                    }
                }
                samples
            });
            (samples, start.elapsed())
        }
        Load::Closed { concurrency, secs } => {
            let start = Instant::now();
            let end = start + Duration::from_secs(secs);
            let samples = rt.block_on(async {
                let workers: Vec<_> = (0..concurrency as u64)
                    .map(|w| {
                        let request = Arc::clone(&request);
                        tokio::spawn(async move {
                            let mut samples = Vec::new();
                            let mut i = w << 32;
                            while Instant::now() < end {
                                let sent = Instant::now();
                                let failure = request(i).await;
                                samples.push(Sample {
                                    latency: sent.elapsed(),
                                    failure,
                                });
                                i += 1;
                            }
                            samples
                        })
                    })
                    .collect();
                let mut samples = Vec::new();
                for w in workers {
                    if let Ok(mut s) = w.await {
                        samples.append(&mut s);
                    }
                }
                samples
            });
            (samples, start.elapsed())
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the `RESULT` line: throughput of successful requests over the wall time, percentiles
/// of every request (failed ones included: a fast error must not flatter the latency), errors.
fn report(samples: &[Sample], wall: Duration) {
    let mut ms: Vec<f64> = samples
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let mut failures = BTreeMap::<&str, usize>::new();
    for f in samples.iter().filter_map(|s| s.failure.as_deref()) {
        *failures.entry(f).or_default() += 1;
    }
    let errors: usize = failures.values().sum();
    let statuses = if failures.is_empty() {
        "-".to_string()
    } else {
        failures
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "RESULT rps={:.0} p50_ms={:.3} p95_ms={:.3} p99_ms={:.3} max_ms={:.3} requests={} errors={} statuses={}",
        (samples.len() - errors) as f64 / wall.as_secs_f64(),
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN),
        samples.len(),
        errors,
        statuses,
    );
}

/// A token unique to this process, so that bodies differ between runs as well as requests.
fn run_nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn http(flags: &HashMap<String, String>) -> anyhow::Result<()> {
    let url: String = flag(flags, "url")?;
    let method: reqwest::Method = flag_or(flags, "method", "GET".to_string())?.parse()?;
    let body: Option<String> = flags.get("body").cloned();
    let token: Option<String> = flags.get("token").cloned();
    let load = Load::from_flags(flags)?;
    let warmup: u64 = flag_or(flags, "warmup", 1)?;
    let rt = runtime()?;
    let client = service_runtime::tls::http_client()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let nonce = run_nonce();
    let make = move |i: u64| {
        let mut request = client.request(method.clone(), &url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &body {
            request = request
                .header("content-type", "application/json")
                .body(body.replace("{n}", &format!("{nonce}-{i}")));
        }
        async move {
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(_) if status.is_success() => None,
                        Ok(_) => Some(status.as_u16().to_string()),
                        Err(_) => Some("body".to_string()),
                    }
                }
                Err(e) if e.is_timeout() => Some("timeout".to_string()),
                Err(_) => Some("connect".to_string()),
            }
        }
    };
    let make = Arc::new(make);
    if warmup > 0 {
        let m = Arc::clone(&make);
        drive(&rt, &load.for_secs(warmup), move |i| m(i | (1 << 62)));
    }
    let (samples, wall) = drive(&rt, &load, move |i| make(i));
    report(&samples, wall);
    Ok(())
}

fn grpc_get(flags: &HashMap<String, String>) -> anyhow::Result<()> {
    let url: String = flag(flags, "url")?;
    let user: String = flag(flags, "user")?;
    let id: String = flag(flags, "id")?;
    let load = Load::from_flags(flags)?;
    let warmup: u64 = flag_or(flags, "warmup", 1)?;
    let rt = runtime()?;
    // The channel the gateway itself uses: one HTTP/2 connection, same options.
    let channel = {
        let _guard = rt.enter();
        service_runtime::grpc::channel(&url, service_runtime::grpc::ClientOptions::default())?
    };
    let client = ProjectServiceClient::new(channel)
        .max_decoding_message_size(service_runtime::grpc::MAX_MESSAGE_SIZE);
    // Signed as the gateway signs, with the key whose public half project-service was given.
    let key = service_runtime::identity::SigningKey::from_env()?.ok_or_else(|| {
        anyhow::anyhow!(
            "set IDENTITY_SIGNING_KEY (the pair of project-service's IDENTITY_PUBLIC_KEY)"
        )
    })?;
    let who = service_runtime::identity::OnBehalfOf {
        user_id: user,
        auth_method: "jwt".to_string(),
        ..Default::default()
    };
    let assertion =
        secrecy::SecretString::from(service_runtime::identity::AssertionSigner::new(&key).mint(
            &who,
            &[service_runtime::identity::audience::PROJECT],
            std::time::Duration::from_secs(3600),
        )?);
    let make = Arc::new(move |_i: u64| {
        let mut client = client.clone();
        let mut request = tonic::Request::new(GetProjectRequest { id: id.clone() });
        service_runtime::identity::attach(
            &mut request,
            service_runtime::identity::ASSERTION,
            &assertion,
        );
        async move {
            match client.get_project(request).await {
                Ok(_) => None,
                Err(status) => Some(format!("grpc-{:?}", status.code())),
            }
        }
    });
    if warmup > 0 {
        let m = Arc::clone(&make);
        drive(&rt, &load.for_secs(warmup), move |i| m(i));
    }
    let (samples, wall) = drive(&rt, &load, move |i| make(i));
    report(&samples, wall);
    Ok(())
}
