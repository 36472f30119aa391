//! Traces, metrics and request logs, observed from outside: spans as an OTLP collector receives
//! them, `/metrics` as Prometheus scrapes it, log lines as written to `LOG_DIR`.
//!
//! Telemetry is process-wide (one subscriber, one tracer provider); nextest runs each test in a
//! process of its own, so each test installs the telemetry it needs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::Value;
use service_runtime::telemetry::{Settings, Telemetry};
use service_runtime::testing::{TempDir, fresh_sqlite_url};

use crate::helpers::*;
use fake_providers::ai::{ANTHROPIC_INPUT, ANTHROPIC_MODEL, FakeProvider, KEY};

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service_name: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// OTLP span kind: 2 server, 3 client.
    kind: i32,
    /// Attribute values, rendered as text.
    attributes: HashMap<String, String>,
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

impl ReceivedSpan {
    fn attribute(&self, key: &str) -> &str {
        self.attributes
            .get(key)
            .unwrap_or_else(|| panic!("no attribute {key} on {self:#?}"))
    }
}

/// A test OTLP/gRPC collector: the published `TraceService`, keeping every span it receives.
#[derive(Clone, Default)]
struct OtlpReceiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| {
                            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(AnyValue::StringValue(s)) => s.clone(),
                                Some(AnyValue::IntValue(i)) => i.to_string(),
                                Some(AnyValue::BoolValue(b)) => b.to_string(),
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), value)
                        })
                        .collect();
                    spans.push(ReceivedSpan {
                        service_name: service_name.clone(),
                        name: span.name,
                        trace_id: hex::encode(span.trace_id),
                        span_id: hex::encode(span.span_id),
                        parent_span_id: hex::encode(span.parent_span_id),
                        kind: span.kind,
                        attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl OtlpReceiver {
    fn start(&self) -> Server {
        let receiver = self.clone();
        Server::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            move |listener, shutdown| async move {
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(receiver))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = shutdown.await;
                        },
                    )
                    .await?;
                Ok(())
            },
        )
    }

    /// Waits until a span named `name` arrives, flushing the exporter meanwhile.
    async fn wait_for(&self, telemetry: &Telemetry, name: &str) -> ReceivedSpan {
        self.wait_until(telemetry, name, |s| s.name == name).await
    }

    /// Waits until a span of trace `trace_id` named `name` arrives.
    async fn wait_in_trace(
        &self,
        telemetry: &Telemetry,
        trace_id: &str,
        name: &str,
    ) -> ReceivedSpan {
        self.wait_until(telemetry, name, |s| {
            s.trace_id == trace_id && s.name == name
        })
        .await
    }

    /// Waits until a span that `matches` arrives; `what` describes it for the failure message.
    async fn wait_until(
        &self,
        telemetry: &Telemetry,
        what: &str,
        matches: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| matches(s)) {
                return span.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no span {what:?} received; got {:#?}",
                self.spans.lock().unwrap()
            );
            telemetry.flush();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn settings() -> Settings {
    let mut settings = Settings::new("gateway-tests");
    settings.json = true;
    settings
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const FRONTEND_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_from_the_gateway_into_project_service() {
    let receiver = OtlpReceiver::default();
    let collector = receiver.start();
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{}", collector.addr));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();
    let stack = Stack::start(Db::Sqlite).await;
    let user = unique_user("trace");

    // A request of its own starts a trace at the gateway...
    let project = stack.gateway.create_project(&user, "traced").await;
    let http = receiver.wait_for(&telemetry, "POST /api/projects").await;
    let client = receiver
        .wait_for(
            &telemetry,
            "autocrea.project.v1.ProjectService/CreateProject",
        )
        .await;
    let grpc = receiver
        .wait_for(
            &telemetry,
            "/autocrea.project.v1.ProjectService/CreateProject",
        )
        .await;
    assert_eq!(http.service_name, "gateway-tests");
    assert_eq!(http.trace_id.len(), 32);
    assert_eq!(
        http.parent_span_id, "",
        "the gateway's span is the root: {http:?}"
    );
    assert_eq!(grpc.trace_id, http.trace_id, "one trace across the hop");
    assert_eq!(
        client.parent_span_id, http.span_id,
        "the gateway's gRPC call is a child of its request"
    );
    assert_eq!(
        grpc.parent_span_id, client.span_id,
        "project-service's span is a child of the gateway's call"
    );
    let insert = receiver
        .wait_in_trace(&telemetry, &http.trace_id, "INSERT projects")
        .await;
    assert_eq!(insert.parent_span_id, grpc.span_id);
    assert_eq!(insert.attribute("db.system"), "sqlite");

    // ...and one from the frontend continues the frontend's trace.
    let id = project["id"].as_str().unwrap();
    let response = stack
        .gateway
        .get(&format!("/api/projects/{id}"), &user)
        .header(
            "traceparent",
            format!("00-{TRACE_ID}-{FRONTEND_SPAN_ID}-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let http = receiver
        .wait_for(&telemetry, "GET /api/projects/{id}")
        .await;
    let client = receiver
        .wait_for(&telemetry, "autocrea.project.v1.ProjectService/GetProject")
        .await;
    let grpc = receiver
        .wait_for(&telemetry, "/autocrea.project.v1.ProjectService/GetProject")
        .await;
    assert_eq!(http.trace_id, TRACE_ID);
    assert_eq!(http.parent_span_id, FRONTEND_SPAN_ID);
    assert_eq!(client.trace_id, TRACE_ID);
    assert_eq!(client.parent_span_id, http.span_id);
    assert_eq!(grpc.trace_id, TRACE_ID);
    assert_eq!(grpc.parent_span_id, client.span_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_request_is_one_trace_down_to_the_database() {
    let receiver = OtlpReceiver::default();
    let collector = receiver.start();
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{}", collector.addr));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();
    // project-service on PostgreSQL, the gateway's key table on SQLite.
    let stack = Stack::start(Db::Postgres).await;
    let user = unique_user("dbtrace");
    let project = stack.gateway.create_project(&user, "db-traced").await;
    let id = project["id"].as_str().unwrap();
    let created = stack
        .gateway
        .post("/api/auth/keys", &user)
        .json(&serde_json::json!({"name": "tracing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let key: Value = created.json().await.unwrap();
    let key = key["key"].as_str().unwrap().to_string();

    let response = stack
        .gateway
        .http
        .get(stack.gateway.url(&format!("/api/projects/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The gateway's request span is the root of its trace...
    let http = receiver
        .wait_for(&telemetry, "GET /api/projects/{id}")
        .await;
    assert_eq!(http.parent_span_id, "", "{http:#?}");
    let trace = http.trace_id.clone();
    // ...the API key lookup is a database span in it...
    let key_lookup = receiver
        .wait_in_trace(&telemetry, &trace, "SELECT api_keys")
        .await;
    assert_eq!(key_lookup.attribute("db.system"), "sqlite");
    assert_eq!(key_lookup.attribute("db.operation"), "SELECT");
    assert_eq!(key_lookup.attribute("db.sql.table"), "api_keys");
    // ...the gateway's gRPC call is a client span under the request...
    let client = receiver
        .wait_in_trace(
            &telemetry,
            &trace,
            "autocrea.project.v1.ProjectService/GetProject",
        )
        .await;
    assert_eq!(client.kind, CLIENT);
    assert_eq!(client.parent_span_id, http.span_id);
    assert_eq!(client.attribute("rpc.system"), "grpc");
    assert_eq!(
        client.attribute("rpc.service"),
        "autocrea.project.v1.ProjectService"
    );
    assert_eq!(client.attribute("rpc.method"), "GetProject");
    assert_eq!(client.attribute("peer.service"), "project-service");
    assert_eq!(client.attribute("rpc.grpc.status_code"), "0");
    // ...project-service's server span is the call's child...
    let server = receiver
        .wait_in_trace(
            &telemetry,
            &trace,
            "/autocrea.project.v1.ProjectService/GetProject",
        )
        .await;
    assert_eq!(server.kind, SERVER);
    assert_eq!(server.parent_span_id, client.span_id);
    // ...and its query is the server span's child, described without its values.
    let query = receiver
        .wait_in_trace(&telemetry, &trace, "SELECT projects")
        .await;
    assert_eq!(query.kind, CLIENT);
    assert_eq!(query.parent_span_id, server.span_id);
    assert_eq!(query.attribute("db.system"), "postgresql");
    assert_eq!(query.attribute("db.operation"), "SELECT");
    assert_eq!(query.attribute("db.sql.table"), "projects");
    let statement = query.attribute("db.statement");
    assert!(statement.contains("$1"), "{statement}");
    let everything = format!("{:?}", receiver.spans.lock().unwrap());
    for secret in [id, user.as_str(), key.as_str(), "db-traced"] {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked into a span attribute"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_request_traces_the_provider_call_and_the_usage_ledger() {
    let receiver = OtlpReceiver::default();
    let collector = receiver.start();
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{}", collector.addr));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();

    let fake = FakeProvider::start().await;
    let (database_url, _data) = fresh_sqlite_url();
    let mut ai_config = ai_service::Config::new(database_url);
    ai_config.provider = Some(ai_service::ProviderConfig::anthropic(fake.url(), KEY));
    // A budget makes every call read the month's spend first.
    ai_config.monthly_token_budget = Some(1_000_000);
    let ai = start_ai_service(ai_config);
    let project = ProjectService::start(Db::Sqlite).await;
    let mut config = gateway_config(&project.url());
    config.services.ai = format!("http://{}", ai.addr);
    config.limits = generous_limits();
    let gateway = Gateway::start(config).await;

    let user = unique_user("aitrace");
    let marker = format!("CODE-MARKER-{}", uuid::Uuid::new_v4().simple());
    let code = format!("print('{marker}')");
    let response = gateway
        .post("/api/ai/explain", &user)
        .json(&serde_json::json!({"code": code, "language": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let http = receiver.wait_for(&telemetry, "POST /api/ai/explain").await;
    let trace = http.trace_id.clone();
    let client = receiver
        .wait_in_trace(&telemetry, &trace, "autocrea.ai.v1.AiService/Explain")
        .await;
    assert_eq!(client.parent_span_id, http.span_id);
    assert_eq!(client.attribute("peer.service"), "ai-service");
    let server = receiver
        .wait_in_trace(&telemetry, &trace, "/autocrea.ai.v1.AiService/Explain")
        .await;
    assert_eq!(server.parent_span_id, client.span_id);
    // The budget check and the ledger row are queries of the call...
    let spend = receiver
        .wait_in_trace(&telemetry, &trace, "SELECT ai_usage")
        .await;
    let ledger = receiver
        .wait_in_trace(&telemetry, &trace, "INSERT ai_usage")
        .await;
    for query in [&spend, &ledger] {
        assert_eq!(query.attribute("db.system"), "sqlite");
        assert_eq!(query.attribute("db.sql.table"), "ai_usage");
    }
    // ...and the provider call is an HTTP client span under ai.provider.
    let provider = receiver
        .wait_in_trace(&telemetry, &trace, "ai.provider")
        .await;
    let attempt = receiver
        .wait_in_trace(&telemetry, &trace, "POST anthropic")
        .await;
    assert_eq!(attempt.kind, CLIENT);
    assert_eq!(attempt.parent_span_id, provider.span_id);
    assert_eq!(attempt.attribute("http.request.method"), "POST");
    assert_eq!(attempt.attribute("server.address"), "127.0.0.1");
    assert_eq!(attempt.attribute("http.response.status_code"), "200");
    assert_eq!(attempt.attribute("peer.service"), "anthropic");
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.body.to_string().contains(&marker)),
        "the code reached the provider"
    );
    let everything = format!("{:?}", receiver.spans.lock().unwrap());
    for secret in [marker.as_str(), KEY, user.as_str()] {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked into a span attribute"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_succeed_quickly_while_the_collector_is_down() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{addr}"));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();
    let stack = Stack::start(Db::Sqlite).await;
    let user = unique_user("nocollector");

    // A first export fails (connection refused) before the measured requests.
    stack.gateway.create_project(&user, "first").await;
    telemetry.flush();
    for i in 0..20 {
        let started = Instant::now();
        stack.gateway.create_project(&user, &format!("p{i}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            started.elapsed()
        );
    }
    let response = stack
        .gateway
        .get("/api/projects", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Shutting down gives up on the unreachable collector within the export timeout.
    let dropped = Instant::now();
    drop(telemetry);
    assert!(dropped.elapsed() < Duration::from_secs(10));
}

/// Samples of a Prometheus text exposition, keyed by `name{labels}` as written; panics on a
/// line that is not valid text format.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line}"
            );
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn scrape(gateway: &Gateway) -> HashMap<String, f64> {
    let response = gateway
        .http
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse_prometheus(&response.text().await.unwrap())
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_rate_limit_rejections() {
    let stack = Stack::start_with(Db::Sqlite, |c| {
        c.limits = generous_limits();
        c.limits.api = "3/1h".parse().unwrap();
    })
    .await;
    let user = unique_user("metrics");
    let before = scrape(&stack.gateway).await;

    let project = stack.gateway.create_project(&user, "counted").await;
    let id = project["id"].as_str().unwrap();
    let path = format!("/api/projects/{id}");
    assert_eq!(
        stack
            .gateway
            .get(&path, &user)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        stack
            .gateway
            .get(&path, &user)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The budget of 3 is spent: the fourth is refused.
    let refused = stack.gateway.get(&path, &user).send().await.unwrap();
    assert_eq!(refused.status(), 429);

    let after = scrape(&stack.gateway).await;
    let created = r#"{method="POST",route="/api/projects",status="201"}"#;
    let read = r#"{method="GET",route="/api/projects/{id}",status="200"}"#;
    let limited = r#"{method="GET",route="/api/projects/{id}",status="429"}"#;
    assert_eq!(
        delta(&before, &after, &format!("http_requests_total{created}")),
        1.0
    );
    assert_eq!(
        delta(&before, &after, &format!("http_requests_total{read}")),
        2.0
    );
    assert_eq!(
        delta(&before, &after, &format!("http_requests_total{limited}")),
        1.0
    );
    assert!(
        !after.keys().any(|k| k.contains(id) || k.contains(&user)),
        "raw paths or user ids in labels"
    );
    assert_eq!(
        delta(
            &before,
            &after,
            r#"rate_limit_rejections_total{group="api"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            r#"rate_limit_rejections_total{group="ai"}"#
        ),
        0.0
    );
    assert!(after.contains_key(r#"rate_limit_rejections_total{group="ai"}"#));
    // The scrape itself is in flight while it is rendered.
    assert_eq!(after["http_requests_in_flight"], 1.0);

    // The histogram of the two reads: cumulative buckets ending in +Inf = count = 2.
    let series = r#"http_request_duration_seconds_bucket{method="GET",route="/api/projects/{id}",status="200",le=""#;
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(series)?.strip_suffix("\"}")?;
            Some((
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                *v,
            ))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 2.0));
    assert_eq!(
        after[&format!("http_request_duration_seconds_count{read}")],
        2.0
    );
    assert!(after[&format!("http_request_duration_seconds_sum{read}")] > 0.0);

    // project-service runs in this process, so its gRPC metrics and pool are in the same registry.
    let grpc = r#"{service="autocrea.project.v1.ProjectService",method="GetProject",code="OK"}"#;
    assert_eq!(
        delta(
            &before,
            &after,
            &format!("grpc_server_requests_total{grpc}")
        ),
        2.0
    );
    assert_eq!(
        after[&format!("grpc_server_request_duration_seconds_count{grpc}")],
        2.0
    );
    assert_eq!(
        after[r#"db_pool_connections{pool="project",state="max"}"#],
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_metrics_port_serves_prometheus_text() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service_runtime::metrics::serve(listener, async {
        let _ = stopped.await;
    }));
    // project-service counts its calls in the process registry the port serves.
    let stack = Stack::start(Db::Sqlite).await;
    stack
        .gateway
        .create_project(&unique_user("port"), "counted")
        .await;

    let http = reqwest::Client::new();
    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let samples = parse_prometheus(&response.text().await.unwrap());
    let created = r#"grpc_server_requests_total{service="autocrea.project.v1.ProjectService",method="CreateProject",code="OK"}"#;
    assert_eq!(samples[created], 1.0);
    let other = http
        .get(format!("http://{addr}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let _ = stop.send(());
    server.await.unwrap();
}

/// Every log line of `dir`'s files whose name starts with `prefix`, parsed as JSON.
fn log_lines(dir: &std::path::Path, prefix: &str) -> (Vec<Value>, String) {
    let mut lines = Vec::new();
    let mut raw = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for line in text.lines() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            lines.push(value);
        }
        raw.push_str(&text);
    }
    (lines, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_lines_are_json_without_tokens_or_prompts() {
    let logs = TempDir::new();
    let mut settings = settings();
    settings.log_dir = Some(logs.path.clone());
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();

    let fake = FakeProvider::start().await;
    let (database_url, _data) = fresh_sqlite_url();
    let mut ai_config = ai_service::Config::new(database_url);
    ai_config.provider = Some(ai_service::ProviderConfig::anthropic(fake.url(), KEY));
    let ai = start_ai_service(ai_config);
    let project = ProjectService::start(Db::Sqlite).await;
    let mut config = gateway_config(&project.url());
    config.services.ai = format!("http://{}", ai.addr);
    config.limits = generous_limits();
    let gateway = Gateway::start(config).await;

    let user = unique_user("logs");
    let token = token(&user);
    let prompt = format!("PROMPT-MARKER-{}", uuid::Uuid::new_v4().simple());
    let response = gateway
        .http
        .post(gateway.url("/api/ai/generate"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"prompt": prompt, "language": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ai_request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let ai_bytes = response.bytes().await.unwrap().len();
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.body.to_string().contains(&prompt)),
        "the prompt reached the provider"
    );
    // A 4xx (unknown project) and a 5xx (sandbox-service is down).
    let missing = gateway
        .get("/api/projects/00000000-0000-0000-0000-000000000000", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let down = gateway
        .get("/api/sandbox/languages", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    let down_id = down.headers()["x-request-id"].to_str().unwrap().to_string();

    // ai-service runs in this process: its metrics are on the same registry.
    let metrics = scrape(&gateway).await;
    let tokens = format!(
        r#"ai_tokens_total{{operation="generate",model="{ANTHROPIC_MODEL}",direction="input"}}"#
    );
    assert_eq!(metrics[&tokens], ANTHROPIC_INPUT as f64);
    assert_eq!(
        metrics[r#"ai_provider_duration_seconds_count{provider="anthropic",outcome="ok"}"#],
        1.0
    );
    assert_eq!(
        metrics[r#"ai_calls_total{operation="generate",outcome="ok",cached="false"}"#],
        1.0
    );

    drop(gateway);
    drop(project);
    drop(ai);
    // Dropping the guard flushes the files.
    drop(telemetry);

    let (lines, raw) = log_lines(&logs.path, "gateway-tests.");
    assert!(!raw.contains(&token), "the bearer token was logged");
    assert!(!raw.contains(&prompt), "the prompt was logged");
    assert!(!raw.contains(KEY), "the provider key was logged");

    let request_line = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id && l.get("status").is_some())
            .unwrap_or_else(|| panic!("no request line for {id} in {lines:#?}"))
            .clone()
    };
    let line = request_line(&ai_request_id);
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/api/ai/generate");
    assert_eq!(line["status"], 200);
    assert_eq!(line["user_id"], user.as_str());
    assert_eq!(line["bytes"], ai_bytes as u64);
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(line["timestamp"].is_string());

    let line = lines
        .iter()
        .find(|l| l["status"] == 404)
        .expect("a line for the 404");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["route"], "/api/projects/{id}");

    let line = request_line(&down_id);
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["status"], 503);
    assert!(
        line["error"].as_str().unwrap().contains("sandbox-service"),
        "{line}"
    );

    // The errors-only file has that line and nothing below ERROR.
    let (errors, _) = log_lines(&logs.path, "gateway-tests-errors.");
    assert!(errors.iter().any(|l| l["request_id"] == down_id.as_str()));
    assert!(errors.iter().all(|l| l["level"] == "ERROR"), "{errors:#?}");
}
