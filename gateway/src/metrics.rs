//! The gateway's Prometheus metrics, served with every other metric of the process at
//! `GET /metrics`: requests by method, route template and status, their latency, the requests
//! in flight, rate-limit rejections by route group, and API key lookups.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use service_runtime::metrics::{latency_family, register};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route template (`/api/projects/{id}`), or `unmatched`: never a raw path.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: &'static str,
}

struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    in_flight: Gauge,
    rejections: Family<GroupLabels, Counter>,
    key_lookups: Counter,
    limiter_without_redis: Gauge,
}

static METRICS: LazyLock<HttpMetrics> = LazyLock::new(|| {
    let metrics = HttpMetrics {
        requests: Family::default(),
        duration: latency_family(),
        in_flight: Gauge::default(),
        rejections: Family::default(),
        key_lookups: Counter::default(),
        limiter_without_redis: Gauge::default(),
    };
    register(
        "api_key_lookups",
        "API keys looked up in the gateway's database (keys recently found unknown are answered \
         from memory and not counted)",
        metrics.key_lookups.clone(),
    );
    register(
        "http_requests",
        "HTTP requests answered, by method, route template and status",
        metrics.requests.clone(),
    );
    register(
        "http_request_duration_seconds",
        "Time to the response head, by method, route template and status",
        metrics.duration.clone(),
    );
    register(
        "http_requests_in_flight",
        "HTTP requests being handled now",
        metrics.in_flight.clone(),
    );
    register(
        "rate_limit_rejections",
        "Requests refused with 429 by the gateway's rate limiter, by route group",
        metrics.rejections.clone(),
    );
    register(
        "rate_limit_redis_unavailable",
        "1 while the shared (Redis) rate limiter does not answer and the gateway limits per \
         replica or refuses (RATE_LIMIT_REDIS_FAILURE), 0 otherwise",
        metrics.limiter_without_redis.clone(),
    );
    metrics
});

/// Whether the shared rate limiter's Redis answers (`false` from a failed call until one answers).
pub fn set_limiter_redis_available(available: bool) {
    METRICS.limiter_without_redis.set(i64::from(!available));
}

/// Counts one API key lookup in the database.
pub fn record_key_lookup() {
    METRICS.key_lookups.inc();
}

/// Registers the gateway's metrics (they appear on `/metrics` from then on), with a rejection
/// count of 0 for each of `groups`, so that a rate() over any group has a starting point.
pub fn init(groups: &[&'static str]) {
    for &group in groups {
        let _ = METRICS.rejections.get_or_create(&GroupLabels { group });
    }
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Starts counting.
    pub fn start() -> Self {
        METRICS.in_flight.inc();
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.in_flight.dec();
    }
}

/// Records one answered request.
pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = RequestLabels {
        method: method.to_string(),
        route: route.to_string(),
        status,
    };
    METRICS.requests.get_or_create(&labels).inc();
    METRICS
        .duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
}

/// Counts one rate-limit rejection in the route group named `group`.
pub fn record_rejection(group: &'static str) {
    METRICS
        .rejections
        .get_or_create(&GroupLabels { group })
        .inc();
}
