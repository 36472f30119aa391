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

mod logs;
mod metrics;
mod traces;

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
