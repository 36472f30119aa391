//! sandbox-service's Prometheus metrics (on its metrics port, or the gateway's `/metrics` in the
//! all-in-one process): runs by language and outcome, their duration, the warm pool.

use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use service_runtime::metrics::{latency_family, on_scrape, register};

use crate::sandbox::Sandbox;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    language: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabels {
    language: &'static str,
}

struct SandboxMetrics {
    runs: Family<RunLabels, Counter>,
    duration: Family<LanguageLabels, Histogram>,
    pool_ready: Gauge,
    pool_target: Gauge,
}

static METRICS: LazyLock<SandboxMetrics> = LazyLock::new(|| {
    let m = SandboxMetrics {
        runs: Family::default(),
        duration: latency_family(),
        pool_ready: Gauge::default(),
        pool_target: Gauge::default(),
    };
    register(
        "sandbox_runs",
        "Sandbox runs by language and outcome (ok, exit_nonzero, timeout, oom, truncated, failed)",
        m.runs.clone(),
    );
    register(
        "sandbox_run_duration_seconds",
        "Wall-clock time of the program in its container, by language",
        m.duration.clone(),
    );
    register(
        "sandbox_pool_ready",
        "Warm containers ready for a run now",
        m.pool_ready.clone(),
    );
    register(
        "sandbox_pool_target",
        "Warm containers the pool keeps when it keeps up (SANDBOX_POOL_SIZE or SANDBOX_POOL_SIZES)",
        m.pool_target.clone(),
    );
    m
});

/// Every outcome `record_run` counts.
const OUTCOMES: [&str; 6] = [
    "ok",
    "exit_nonzero",
    "timeout",
    "oom",
    "truncated",
    "failed",
];

/// Registers the metrics, each language's series at zero (so that alerts and dashboards see
/// them before the first run), and reports `sandbox`'s warm pool at every scrape (while it lives).
pub fn init(sandbox: &Arc<Sandbox>) {
    let m = &*METRICS;
    for language in crate::language::LANGUAGES {
        let language = language.name;
        for outcome in OUTCOMES {
            let _ = m.runs.get_or_create(&RunLabels { language, outcome });
        }
        let _ = m.duration.get_or_create(&LanguageLabels { language });
    }
    m.pool_target
        .set(i64::try_from(sandbox.pool_target()).unwrap_or(i64::MAX));
    let sandbox: Weak<Sandbox> = Arc::downgrade(sandbox);
    on_scrape(move || {
        if let Some(sandbox) = sandbox.upgrade() {
            m.pool_ready
                .set(i64::try_from(sandbox.pool_ready()).unwrap_or(i64::MAX));
        }
    });
}

/// Counts a finished run; `duration` is the program's, when it ran.
pub fn record_run(language: &'static str, outcome: &'static str, duration: Option<Duration>) {
    let m = &*METRICS;
    m.runs.get_or_create(&RunLabels { language, outcome }).inc();
    if let Some(duration) = duration {
        m.duration
            .get_or_create(&LanguageLabels { language })
            .observe(duration.as_secs_f64());
    }
}
