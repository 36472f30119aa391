//! Prometheus metrics: one registry per process, rendered in the Prometheus text format.
//!
//! Each crate registers its metrics once ([`register`]), usually from a `LazyLock` static that
//! holds the handles, and updates them where the numbers are known. Values read from elsewhere
//! at scrape time (pool sizes) are refreshed by hooks ([`on_scrape`]). The gateway serves the
//! registry at `GET /metrics`; every service serves it on its own port ([`serve`], started from
//! `METRICS_LISTEN_ADDR` by [`start_from_env`]). In the all-in-one process there is one registry,
//! so the gateway's `/metrics` shows every service.
//!
//! Label values are always bounded: route templates, gRPC method names, codes, never raw paths
//! or user ids.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::config::{ConfigError, optional};

/// `Content-Type` of [`render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Hook = Box<dyn Fn() + Send + Sync>;

struct Process {
    registry: Registry,
    hooks: Vec<Hook>,
}

static PROCESS: LazyLock<Mutex<Process>> = LazyLock::new(|| {
    Mutex::new(Process {
        registry: Registry::default(),
        hooks: Vec::new(),
    })
});

fn process() -> std::sync::MutexGuard<'static, Process> {
    // A panic while registering leaves the registry usable; carry on with it.
    PROCESS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `metric` to the process registry under `name` (counters get `_total` appended).
pub fn register(name: &str, help: &str, metric: impl Metric) {
    process().registry.register(name, help, metric);
}

/// Runs `hook` before every scrape, to copy numbers kept elsewhere into gauges.
pub fn on_scrape(hook: impl Fn() + Send + Sync + 'static) {
    process().hooks.push(Box::new(hook));
}

/// Every metric of the process in the Prometheus text format.
pub fn render() -> String {
    let process = process();
    for hook in &process.hooks {
        hook();
    }
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &process.registry);
    out
}

/// Histogram buckets for request latencies in seconds: 0.5 ms to 60 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ]
    .into_iter()
}

/// A family of latency histograms with [`latency_buckets`].
pub fn latency_family<L>() -> Family<L, Histogram>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    Family::new_with_constructor(|| Histogram::new(latency_buckets()))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
    state: &'static str,
}

static DB_POOL: LazyLock<Family<PoolLabels, Gauge>> = LazyLock::new(|| {
    let family = Family::<PoolLabels, Gauge>::default();
    register(
        "db_pool_connections",
        "SQL pool connections by pool and state (idle, in_use, max)",
        family.clone(),
    );
    family
});

/// Reports `pool`'s connections as `db_pool_connections{pool=name, state=idle|in_use|max}` at
/// every scrape.
pub fn observe_pool(name: &str, pool: sqlx::AnyPool) {
    let family = &*DB_POOL;
    let name = name.to_string();
    let max = i64::from(pool.options().get_max_connections());
    on_scrape(move || {
        let size = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        for (state, value) in [("idle", idle), ("in_use", size - idle), ("max", max)] {
            family
                .get_or_create(&PoolLabels {
                    pool: name.clone(),
                    state,
                })
                .set(value);
        }
    });
}

/// The metrics address from `variable`: `off` (or `none`, `false`, `0`) disables the port;
/// unset means `0.0.0.0:default_port`.
pub fn listen_addr(variable: &str, default_port: u16) -> Result<Option<SocketAddr>, ConfigError> {
    match optional(variable) {
        None => Ok(Some(SocketAddr::from(([0, 0, 0, 0], default_port)))),
        Some(v) if ["off", "none", "false", "0"].contains(&v.to_ascii_lowercase().as_str()) => {
            Ok(None)
        }
        Some(v) => v.parse().map(Some).map_err(|e| {
            ConfigError::new(variable, format!("cannot parse {v:?} as host:port: {e}"))
        }),
    }
}

/// Binds the metrics port named by `METRICS_LISTEN_ADDR` (default `0.0.0.0:default_port`, `off`
/// to disable) and serves [`render`] on it in the background for the life of the process.
pub async fn start_from_env(default_port: u16) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = listen_addr("METRICS_LISTEN_ADDR", default_port)? else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        ConfigError::new(
            "METRICS_LISTEN_ADDR",
            format!("cannot listen on {addr}: {e}"),
        )
    })?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics at /metrics");
    tokio::spawn(serve(listener, std::future::pending()));
    Ok(Some(bound))
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until `shutdown` resolves. Anything
/// else gets 404. One response per connection: scrapes are rare, so simplicity wins.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read the request head (bounded), enough to see the request line.
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next(), parts.next());
            let path = path.map(|p| p.split('?').next().unwrap_or(p));
            let (status, content_type, body) = match (method, path) {
                (Some("GET"), Some("/metrics")) => ("200 OK", CONTENT_TYPE, render()),
                _ => (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "only GET /metrics here\n".to_string(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn renders_registered_metrics_as_prometheus_text() {
        let counter = Counter::<u64>::default();
        register(
            "unit_test_things",
            "Things counted by a unit test",
            counter.clone(),
        );
        counter.inc_by(3);
        let text = render();
        assert!(
            text.contains("# TYPE unit_test_things_total counter"),
            "{text}"
        );
        assert!(text.contains("\nunit_test_things_total 3\n"), "{text}");
    }

    #[test]
    fn metrics_port_defaults_to_all_interfaces() {
        assert_eq!(
            listen_addr("METRICS_TEST_UNSET_VARIABLE", 9100).unwrap(),
            Some(SocketAddr::from(([0, 0, 0, 0], 9100)))
        );
    }
}
