//! One tracing subscriber set-up for every binary: human-readable on a terminal, JSON lines
//! otherwise, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so the
/// all-in-one binary and tests can share it.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if std::io::stdout().is_terminal() {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}
