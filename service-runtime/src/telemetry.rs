//! One tracing set-up for every binary.
//!
//! - Console: human-readable on a terminal, JSON lines otherwise, filtered by `RUST_LOG`
//!   (default `info`).
//! - Files, when `LOG_DIR` is set: `<service>.<date>.log` with everything `RUST_LOG` lets through
//!   and `<service>-errors.<date>.log` with errors only, both JSON lines, rotated daily, the
//!   newest `LOG_RETENTION_DAYS` (default 14) of each kept. Writing happens on a background
//!   thread that drops lines rather than block a request when the disk cannot keep up.
//! - OpenTelemetry, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: spans exported over OTLP/gRPC in
//!   batches from a background thread, with `service.name` and `service.version`. A collector
//!   that is down costs dropped spans, never a failed or slower request. `OTEL_TRACES_FILTER`
//!   (default `info`) chooses which spans are exported, independently of `RUST_LOG`.
//!
//! W3C trace context travels in HTTP headers and gRPC metadata; [`inject`] and [`extract`] move it
//! between a header map and the current `tracing` span.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{ConfigError, optional, parse_or};

/// The version reported as `service.version` (every crate shares the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long one export to the collector may take before the batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`init_with`] sets up; [`Settings::from_env`] reads it from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `service.name` of exported spans, and the log file prefix.
    pub service: String,
    /// Console filter (`RUST_LOG`).
    pub log_filter: String,
    /// Console output as JSON lines (`true` when stdout is not a terminal).
    pub json: bool,
    /// Directory of the rotated log files (`LOG_DIR`); none when unset.
    pub log_dir: Option<PathBuf>,
    /// Daily files kept of each kind (`LOG_RETENTION_DAYS`).
    pub log_retention_days: usize,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317` (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// Which spans are exported (`OTEL_TRACES_FILTER`).
    pub traces_filter: String,
}

impl Settings {
    /// Console output only, at `info`, as JSON unless stdout is a terminal.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_string(),
            log_filter: "info".into(),
            json: !std::io::stdout().is_terminal(),
            log_dir: None,
            log_retention_days: 14,
            otlp_endpoint: None,
            traces_filter: "info".into(),
        }
    }

    /// Reads `RUST_LOG`, `LOG_DIR`, `LOG_RETENTION_DAYS`, `OTEL_EXPORTER_OTLP_ENDPOINT` and
    /// `OTEL_TRACES_FILTER`.
    pub fn from_env(service: &str) -> Result<Self, ConfigError> {
        let defaults = Self::new(service);
        let log_retention_days = parse_or("LOG_RETENTION_DAYS", defaults.log_retention_days)?;
        if log_retention_days == 0 {
            return Err(ConfigError::new("LOG_RETENTION_DAYS", "must be at least 1"));
        }
        let otlp_endpoint = optional("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(endpoint) = &otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "expected http://host:port or https://host:port (OTLP over gRPC)",
            ));
        }
        Ok(Self {
            log_filter: optional("RUST_LOG").unwrap_or(defaults.log_filter),
            log_dir: optional("LOG_DIR").map(PathBuf::from),
            log_retention_days,
            otlp_endpoint,
            traces_filter: optional("OTEL_TRACES_FILTER").unwrap_or(defaults.traces_filter),
            ..defaults
        })
    }
}

/// Keeps telemetry running; dropping it flushes the log files and the spans not yet exported.
/// Hold it in `main` until the service has stopped.
#[must_use = "dropping the guard stops log files and span export"]
#[derive(Default)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    _file_writers: Vec<tracing_appender::non_blocking::WorkerGuard>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.tracer_provider.is_some())
            .field("log_files", &!self._file_writers.is_empty())
            .finish()
    }
}

impl Telemetry {
    /// Sends the spans that are waiting in the batch now (tests and shutdown use it).
    pub fn flush(&self) {
        if let Some(provider) = &self.tracer_provider
            && let Err(e) = provider.force_flush()
        {
            tracing::debug!(error = %e, "span flush failed");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(e) = provider.shutdown()
        {
            // The subscriber may be gone by now; stderr is what is left.
            eprintln!("span export did not shut down cleanly: {e}");
        }
    }
}

/// Installs telemetry for `service` as the environment describes ([`Settings::from_env`]).
/// Call it inside the Tokio runtime (the OTLP client lives on it).
pub fn init(service: &str) -> anyhow::Result<Telemetry> {
    init_with(Settings::from_env(service)?)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs telemetry as `settings` say. Only the first call in a process installs anything
/// (the subscriber is process-wide); later calls return an inert guard, so the all-in-one binary
/// and tests can call it freely.
pub fn init_with(settings: Settings) -> anyhow::Result<Telemetry> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(Telemetry::default());
    }
    let mut guard = Telemetry::default();
    let mut layers: Vec<BoxedLayer> = Vec::new();

    let console = if settings.json {
        json_lines(std::io::stdout).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).boxed()
    };
    layers.push(
        console
            .with_filter(env_filter(&settings.log_filter, "RUST_LOG")?)
            .boxed(),
    );

    if let Some(dir) = &settings.log_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("LOG_DIR: cannot create {}", dir.display()))?;
        for (suffix, errors_only) in [("", false), ("-errors", true)] {
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(format!("{}{suffix}", settings.service))
                .filename_suffix("log")
                .max_log_files(settings.log_retention_days)
                .build(dir)
                .with_context(|| format!("LOG_DIR: cannot write in {}", dir.display()))?;
            let (writer, worker) = tracing_appender::non_blocking(appender);
            guard._file_writers.push(worker);
            let layer = json_lines(writer);
            layers.push(if errors_only {
                layer.with_filter(LevelFilter::ERROR).boxed()
            } else {
                layer
                    .with_filter(env_filter(&settings.log_filter, "RUST_LOG")?)
                    .boxed()
            });
        }
    }

    if let Some(endpoint) = &settings.otlp_endpoint {
        let provider = tracer_provider(&settings.service, endpoint)?;
        let tracer = provider.tracer("autocrea");
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(env_filter(&settings.traces_filter, "OTEL_TRACES_FILTER")?)
                .boxed(),
        );
        guard.tracer_provider = Some(provider);
    }

    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        // Someone else installed a subscriber first (a test harness): keep theirs.
        return Ok(Telemetry::default());
    }
    let _ = INSTALLED.set(());
    tracing::debug!(service = settings.service, version = VERSION, otlp = ?settings.otlp_endpoint, "telemetry initialised");
    Ok(guard)
}

fn json_lines<W>(writer: W) -> impl Layer<Registry> + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
}

fn env_filter(directives: &str, variable: &str) -> Result<EnvFilter, ConfigError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| ConfigError::new(variable, e.to_string()))
}

fn tracer_provider(service: &str, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter")?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(service.to_string())
        .with_attribute(opentelemetry::KeyValue::new("service.version", VERSION))
        .build();
    // The batch processor queues spans (dropping them when the queue is full) and exports from
    // its own thread, so requests never wait for the collector.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The W3C trace context of the current span, written into `carrier` (`traceparent`,
/// `tracestate`). Writes nothing when spans are not exported.
pub fn inject(carrier: &mut dyn Injector) {
    inject_span(&tracing::Span::current(), carrier);
}

/// The W3C trace context of `span`, written into `carrier`, so that the receiver's spans become
/// its children. Writes nothing when spans are not exported.
pub fn inject_span(span: &tracing::Span, carrier: &mut dyn Injector) {
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, carrier);
    }
}

/// Makes the W3C trace context found in `carrier` the parent of `span`, when there is one.
pub fn extract(span: &tracing::Span, carrier: &dyn Extractor) {
    if carrier.get("traceparent").is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Makes the W3C trace context in `traceparent` (and `tracestate`) header values the parent of
/// `span`; malformed values are ignored, as the W3C recommendation asks.
pub fn extract_w3c(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    struct Pair<'a>(&'a str, Option<&'a str>);
    impl Extractor for Pair<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                "traceparent" => Some(self.0),
                "tracestate" => self.1,
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    extract(span, &Pair(traceparent, tracestate));
}

/// A client span (`http.client`, kind client) for one outbound HTTP request to `peer` (a
/// provider: `anthropic`, `vercel`, …), named `<METHOD> <peer>`, with `http.request.method`,
/// `server.address` and `server.port`. Record its answer with [`record_http_status`] or
/// [`record_http_failure`]. URLs, headers and bodies are not recorded: they can carry ids,
/// tokens and prompts.
pub fn http_client_span(method: &str, host: &str, port: Option<u16>, peer: &str) -> tracing::Span {
    tracing::info_span!(
        "http.client",
        otel.name = format!("{method} {peer}"),
        otel.kind = "client",
        http.request.method = method,
        server.address = host,
        server.port = port,
        peer.service = peer,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records the HTTP status of `span`'s answer. 5xx, 429 and refused credentials (401, 403)
/// mark it as an error; other 4xx are answers the caller acts on (a missing file to upload).
pub fn record_http_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 || matches!(status, 401 | 403 | 429) {
        span.record("error.type", status.to_string().as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// Marks `span` as failed without an HTTP answer; `kind` is a short bounded name (`timeout`,
/// `connect`, `body`).
pub fn record_http_failure(span: &tracing::Span, kind: &'static str) {
    span.record("error.type", kind);
    span.record("otel.status_code", "ERROR");
}

/// Renames `span`'s exported span, e.g. once an HTTP route template is known. (Recording
/// `otel.name` no longer works after the span has started.)
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

/// The trace id of the current span as 32 hex digits, when spans are exported.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Adapts gRPC / HTTP header maps (`http::HeaderMap`) to the propagator.
pub struct HeaderCarrier<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Reads W3C trace context from an `http::HeaderMap`.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes W3C trace context into tonic request metadata.
pub struct MetadataCarrier<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}
