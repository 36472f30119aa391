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

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
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

/// How long a client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for scrapes in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` over HTTP/1.1 on `listener` until `shutdown` resolves; anything else
/// gets 404. At shutdown the listener closes, idle connections close at once and scrapes in
/// flight get [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let connection = http.serve_connection(TokioIo::new(stream), service_fn(answer));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics connection failed");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics connections still open after the drain timeout");
    }
}

/// The answer to one request on the metrics port.
async fn answer(request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            (StatusCode::OK, CONTENT_TYPE, render())
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "only GET /metrics here\n".to_string(),
            )
        };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    Ok(response)
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

    /// Sends `request` on `stream` and reads one answer: its status line, headers and body.
    async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&answer).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    return text;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return text;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn the_port_answers_metrics_404_elsewhere_and_stops_with_idle_connections_open() {
        use tokio::io::AsyncReadExt;
        let counter = Counter::<u64>::default();
        register(
            "port_test_scrapes",
            "Scrapes seen by a unit test",
            counter.clone(),
        );
        counter.inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = stopped.await;
        }));

        // One keep-alive connection for every request, as scrapers do.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let metrics = exchange(&mut stream, "GET /metrics?x=1 HTTP/1.1\r\nhost: t\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(
            metrics.contains(&format!("content-type: {CONTENT_TYPE}\r\n")),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nport_test_scrapes_total 1\n"),
            "{metrics}"
        );
        for request in [
            "GET /elsewhere HTTP/1.1\r\nhost: t\r\n\r\n",
            "POST /metrics HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
        ] {
            let other = exchange(&mut stream, request).await;
            assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
            assert!(other.ends_with("only GET /metrics here\n"), "{other}");
        }

        // Shutdown closes the idle connection and the port, and ends `serve` well within the
        // drain timeout.
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("serve ends at shutdown")
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn metrics_port_defaults_to_all_interfaces() {
        assert_eq!(
            listen_addr("METRICS_TEST_UNSET_VARIABLE", 9100).unwrap(),
            Some(SocketAddr::from(([0, 0, 0, 0], 9100)))
        );
    }
}
