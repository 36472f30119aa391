//! `Server-Timing` and `X-Cache` on every AI answer.

use super::*;

/// Times one request and writes `Server-Timing`.
pub(super) struct Timing {
    started: Instant,
}

impl Timing {
    pub(super) fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// `provider;dur=P, gateway;dur=G, total;dur=T` in milliseconds, where `gateway` is ours
    /// (gateway plus ai-service); without provider time (cache hits, usage, errors), `gateway`
    /// is the whole of it.
    pub(super) fn header(&self, provider_ms: Option<u64>) -> String {
        let total = self.started.elapsed().as_secs_f64() * 1000.0;
        match provider_ms {
            Some(p) => {
                let own = (total - p as f64).max(0.0);
                format!(
                    "provider;dur={p};desc=\"AI provider\", gateway;dur={own:.3};desc=\"gateway + ai-service\", total;dur={total:.3}"
                )
            }
            None => format!(
                "gateway;dur={total:.3};desc=\"gateway + ai-service\", total;dur={total:.3}"
            ),
        }
    }

    /// Adds the timing and cache headers of a downstream answer.
    pub(super) fn apply(
        &self,
        builder: &mut HttpResponseBuilder,
        meta: &tonic::metadata::MetadataMap,
    ) {
        let provider_ms = metadata(meta, PROVIDER_MS).and_then(|v| v.parse::<u64>().ok());
        builder.insert_header((
            HeaderName::from_static("server-timing"),
            self.header(provider_ms),
        ));
        if let Some(cache) = metadata(meta, CACHE).and_then(|v| HeaderValue::from_str(v).ok()) {
            builder.insert_header((HeaderName::from_static("x-cache"), cache));
        }
    }

    /// An error response with its timing.
    pub(super) fn error(&self, error: &ApiError) -> HttpResponse {
        let mut response = error.error_response();
        if let Ok(value) = HeaderValue::from_str(&self.header(None)) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("server-timing"), value);
        }
        response
    }

    /// Answers a unary call: its message mapped to JSON, or its status mapped to a problem.
    pub(super) async fn unary<M, T: Serialize>(
        &self,
        call: impl Future<Output = Result<tonic::Response<M>, tonic::Status>>,
        map: impl FnOnce(M) -> T,
    ) -> HttpResponse {
        match call.await {
            Ok(response) => {
                let mut builder = HttpResponse::Ok();
                self.apply(&mut builder, response.metadata());
                builder.json(map(response.into_inner()))
            }
            Err(status) => self.error(&ai_error(&status)),
        }
    }
}
