//! ai-service's Prometheus metrics (on its metrics port, or the gateway's `/metrics` in the
//! all-in-one process): tokens and calls from the usage ledger, provider latency and errors.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use service_runtime::metrics::{latency_family, register};

use crate::ledger::{Outcome, UsageEntry};
use crate::task::Operation;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    operation: &'static str,
    model: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: &'static str,
    cached: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderErrorLabels {
    provider: &'static str,
    kind: &'static str,
}

struct AiMetrics {
    tokens: Family<TokenLabels, Counter>,
    calls: Family<CallLabels, Counter>,
    provider_duration: Family<ProviderLabels, Histogram>,
    provider_errors: Family<ProviderErrorLabels, Counter>,
}

static METRICS: LazyLock<AiMetrics> = LazyLock::new(|| {
    let m = AiMetrics {
        tokens: Family::default(),
        calls: Family::default(),
        provider_duration: latency_family(),
        provider_errors: Family::default(),
    };
    register(
        "ai_tokens",
        "Tokens billed by the AI provider, by operation, model and direction (input, output)",
        m.tokens.clone(),
    );
    register(
        "ai_calls",
        "AI operations recorded in the usage ledger, by operation, outcome and cache hit",
        m.calls.clone(),
    );
    register(
        "ai_provider_duration_seconds",
        "Time until the provider answered (whole answer, or first token of a stream), retries included",
        m.provider_duration.clone(),
    );
    register(
        "ai_provider_errors",
        "Failed provider attempts, by provider and kind (transient: retried or retryable; permanent)",
        m.provider_errors.clone(),
    );
    m
});

/// Registers the metrics with their series at zero, so that alerts and dashboards see them (and
/// rates start) before the first call: every operation's calls, and with a configured `provider`
/// (its name and model) its latency, errors and tokens.
pub fn init(provider: Option<(&'static str, &str)>) {
    let m = &*METRICS;
    for operation in Operation::ALL {
        let operation = operation.as_str();
        for outcome in [Outcome::Ok, Outcome::Failed, Outcome::Cancelled] {
            for cached in ["true", "false"] {
                let _ = m.calls.get_or_create(&CallLabels {
                    operation,
                    outcome: outcome.as_str(),
                    cached,
                });
            }
        }
        if let Some((_, model)) = provider {
            for direction in ["input", "output"] {
                let _ = m.tokens.get_or_create(&TokenLabels {
                    operation,
                    model: model.to_string(),
                    direction,
                });
            }
        }
    }
    if let Some((provider, _)) = provider {
        for outcome in ["ok", "error"] {
            let _ = m
                .provider_duration
                .get_or_create(&ProviderLabels { provider, outcome });
        }
        for kind in ["transient", "permanent"] {
            let _ = m
                .provider_errors
                .get_or_create(&ProviderErrorLabels { provider, kind });
        }
    }
}

/// Counts a ledger row: the call and its tokens.
pub fn record_usage(entry: &UsageEntry) {
    let m = &*METRICS;
    m.calls
        .get_or_create(&CallLabels {
            operation: entry.operation.as_str(),
            outcome: entry.outcome.as_str(),
            cached: if entry.cached { "true" } else { "false" },
        })
        .inc();
    for (direction, tokens) in [
        ("input", entry.usage.input_tokens),
        ("output", entry.usage.output_tokens),
    ] {
        if tokens > 0 {
            m.tokens
                .get_or_create(&TokenLabels {
                    operation: entry.operation.as_str(),
                    model: entry.model.clone(),
                    direction,
                })
                .inc_by(tokens);
        }
    }
}

/// Records how long a provider call took to answer, and whether it did.
pub fn record_provider_call(provider: &'static str, ok: bool, elapsed: Duration) {
    METRICS
        .provider_duration
        .get_or_create(&ProviderLabels {
            provider,
            outcome: if ok { "ok" } else { "error" },
        })
        .observe(elapsed.as_secs_f64());
}

/// Counts one failed provider attempt.
pub fn record_provider_error(provider: &'static str, transient: bool) {
    METRICS
        .provider_errors
        .get_or_create(&ProviderErrorLabels {
            provider,
            kind: if transient { "transient" } else { "permanent" },
        })
        .inc();
}
