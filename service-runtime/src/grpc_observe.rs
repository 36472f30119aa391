//! What every gRPC server records about each call: a `grpc.server` span whose parent is the
//! caller's W3C trace context (so the gateway's trace continues here), and the
//! `grpc_server_requests_total` / `grpc_server_request_duration_seconds` metrics by service,
//! method and status code. The call ends when its response body ends (its trailers carry the
//! status), so streaming calls are measured over their whole length.
//!
//! Clients get the other half from [`TracedChannel`]: a `grpc.client` span per call, child of
//! the caller's current span, whose W3C trace context goes out in the call's metadata, so the
//! server's span is the child of the client's.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::metrics::{latency_family, register};
use crate::telemetry::{HeaderCarrier, HeaderExtractor, extract, inject_span};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    method: String,
    code: &'static str,
}

struct GrpcMetrics {
    requests: Family<CallLabels, Counter>,
    duration: Family<CallLabels, Histogram>,
}

static METRICS: LazyLock<GrpcMetrics> = LazyLock::new(|| {
    let metrics = GrpcMetrics {
        requests: Family::default(),
        duration: latency_family(),
    };
    register(
        "grpc_server_requests",
        "gRPC calls served, by service, method and status code",
        metrics.requests.clone(),
    );
    register(
        "grpc_server_request_duration_seconds",
        "gRPC call duration until the response ends, by service, method and status code",
        metrics.duration.clone(),
    );
    metrics
});

/// The tower layer [`crate::grpc::serve`] puts in front of every service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LazyLock::force(&METRICS);
        Observe { inner }
    }
}

/// A service wrapped by [`ObserveLayer`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<ObservedBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        let (service, method) = (service.to_string(), method.to_string());
        // Health probes come every few seconds from every prober; a span each is only noise.
        let span = if service.starts_with("grpc.health.") {
            tracing::Span::none()
        } else {
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = path,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                request_id = tracing::field::Empty,
                rpc.grpc.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            if let Some(id) = request
                .headers()
                .get(crate::grpc::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
            {
                span.record("request_id", id);
            }
            extract(&span, &HeaderExtractor(request.headers()));
            span
        };
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(async move {
            let response = future.instrument(span.clone()).await?;
            Ok(ObservedBody::watch(
                response,
                span,
                Side::Server {
                    started,
                    service,
                    method,
                },
            ))
        })
    }
}

/// A client channel that opens a `grpc.client` span (kind client) per call, named
/// `<package.Service>/<Method>` with `rpc.system`, `rpc.service`, `rpc.method`, `peer.service`
/// and `rpc.grpc.status_code`, as a child of the current span, and sends that span's W3C trace
/// context in the call's metadata. Health checks get neither.
#[derive(Debug, Clone)]
pub struct TracedChannel {
    inner: Channel,
    peer: &'static str,
}

impl TracedChannel {
    /// `inner`, whose calls go to the service named `peer` (`project-service`).
    pub fn new(inner: Channel, peer: &'static str) -> Self {
        Self { inner, peer }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = http::Response<ObservedBody>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        let span = if service.starts_with("grpc.health.") {
            tracing::Span::none()
        } else {
            let span = tracing::info_span!(
                "grpc.client",
                otel.name = format!("{service}/{method}"),
                otel.kind = "client",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                peer.service = self.peer,
                rpc.grpc.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            inject_span(&span, &mut HeaderCarrier(request.headers_mut()));
            span
        };
        let future = {
            let _entered = span.enter();
            tower::Service::call(&mut self.inner, request)
        };
        Box::pin(async move {
            let response = match future.instrument(span.clone()).await {
                Ok(response) => response,
                Err(error) => {
                    // No answer at all (connection refused, timeout): the caller sees UNAVAILABLE.
                    span.record("rpc.grpc.status_code", tonic::Code::Unavailable as i32);
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", "transport");
                    return Err(error);
                }
            };
            Ok(ObservedBody::watch(response, span, Side::Client))
        })
    }
}

struct Call {
    span: tracing::Span,
    header_code: Option<i32>,
    side: Side,
}

enum Side {
    /// A call served: counted in the server metrics.
    Server {
        started: Instant,
        service: String,
        method: String,
    },
    /// A call made through [`TracedChannel`]: its span only.
    Client,
}

impl Call {
    fn finish(self, code: i32) {
        let code = tonic::Code::from_i32(code);
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_failure(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        let Side::Server {
            started,
            service,
            method,
        } = self.side
        else {
            return;
        };
        // Unknown paths answer UNIMPLEMENTED; their names come from the caller, so they are
        // folded into one label value to keep the series bounded.
        let (service, method) = if code == tonic::Code::Unimplemented {
            ("unknown".to_string(), "unknown".to_string())
        } else {
            (service, method)
        };
        let labels = CallLabels {
            service,
            method,
            code: code_name(code),
        };
        let metrics = &*METRICS;
        metrics.requests.get_or_create(&labels).inc();
        metrics
            .duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Whether a call that ended with `code` failed (its span gets status `ERROR`). Answers about
/// the caller's own request (not found, invalid, refused) are the service working as meant.
fn is_failure(code: tonic::Code) -> bool {
    !matches!(
        code,
        tonic::Code::Ok
            | tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::AlreadyExists
            | tonic::Code::FailedPrecondition
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
    )
}

/// A response body that records the call when its trailers (or its end) go by.
pub struct ObservedBody {
    inner: tonic::body::Body,
    call: Option<Call>,
}

impl ObservedBody {
    /// `response` with its body watched: the call ends in `span` when the body does, with the
    /// status from the trailers, or from the headers for a trailers-only answer.
    fn watch(
        response: http::Response<tonic::body::Body>,
        span: tracing::Span,
        side: Side,
    ) -> http::Response<Self> {
        let header_code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok());
        response.map(|inner| Self {
            inner,
            call: Some(Call {
                span,
                header_code,
                side,
            }),
        })
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        // Streaming handlers do their work while the body is polled: keep it inside the span.
        let _entered = this.call.as_ref().map(|c| c.span.enter());
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|trailers| {
                trailers
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(tonic::Code::Unknown as i32)
            }),
            Poll::Ready(Some(Err(status))) => Some(status.code() as i32),
            Poll::Ready(None) => Some(
                this.call
                    .as_ref()
                    .and_then(|c| c.header_code)
                    .unwrap_or(tonic::Code::Ok as i32),
            ),
            Poll::Pending => None,
        };
        drop(_entered);
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            // Never read to the end: a trailers-only answer (its status is in the headers), or
            // the client went away mid-stream.
            let code = call.header_code.unwrap_or(tonic::Code::Cancelled as i32);
            call.finish(code);
        }
    }
}

/// The conventional upper-snake name of a gRPC code, as a bounded label value.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
