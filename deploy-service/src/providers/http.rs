//! One HTTP call to a provider under the shared retry policy: timeouts, network failures, 408
//! and 5xx are retried with exponential back-off and jitter; 429 waits for the reset the
//! provider announces (`Retry-After`, `X-RateLimit-Reset`, Vercel's `error.limit.reset`) when it
//! is near enough; any other answer goes back to the caller.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;
use service_runtime::retry::{self, Failed, until_reset};
use service_runtime::telemetry::{http_client_span, record_http_failure, record_http_status};
use tracing::Instrument;

use super::ProviderError;
use crate::config::RetryPolicy;
use crate::model::Provider;

/// A provider's answer that was not retried away.
#[derive(Debug)]
pub(crate) struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `Ok(self)` for 2xx, otherwise the provider's rejection with its own message.
    pub fn success(self, provider: Provider, what: &str) -> Result<Self, ProviderError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.rejection(provider, what))
        }
    }

    /// The provider's refusal, with its own message.
    pub fn rejection(&self, provider: Provider, what: &str) -> ProviderError {
        ProviderError::Rejected {
            provider,
            what: what.to_string(),
            status: self.status.as_u16(),
            message: error_text(&self.body),
        }
    }
}

/// Sends requests for one provider under a retry policy.
#[derive(Debug, Clone)]
pub(crate) struct HttpCaller {
    client: Client,
    policy: retry::RetryPolicy,
    provider: Provider,
}

impl HttpCaller {
    /// A caller for `provider`.
    pub fn new(client: Client, policy: RetryPolicy, provider: Provider) -> Self {
        Self {
            client,
            policy: policy.into(),
            provider,
        }
    }

    /// Sends the request `build` makes (again for each attempt); `what` names the operation in
    /// error text ("upload of index.html").
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        self.policy
            .run(|| self.attempt(what, &build))
            .await
            .map_err(|gave_up| gave_up.error)
    }

    /// One attempt, in its own `http.client` span (ended before any back-off): the reply, or
    /// whether the failure may pass.
    async fn attempt(
        &self,
        what: &str,
        build: &impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply, Failed<ProviderError>> {
        let provider = self.provider;
        let unreachable = |span: &tracing::Span, error: reqwest::Error| {
            record_http_failure(span, failure_kind(&error));
            Failed::transient(
                ProviderError::Unreachable {
                    provider,
                    what: what.to_string(),
                    reason: describe(&error),
                },
                None,
            )
        };
        let request = build(&self.client)
            .build()
            .map_err(|error| unreachable(&tracing::Span::none(), error))?;
        let url = request.url();
        let span = http_client_span(
            request.method().as_str(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default(),
            provider.as_str(),
        );
        let response = self
            .client
            .execute(request)
            .instrument(span.clone())
            .await
            .map_err(|error| unreachable(&span, error))?;
        let status = response.status();
        record_http_status(&span, status.as_u16());
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .instrument(span.clone())
            .await
            .map_err(|error| unreachable(&span, error))?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = rate_limit_wait(&headers, &body);
            return Err(Failed::transient(
                ProviderError::RateLimited {
                    provider,
                    what: what.to_string(),
                    retry_after_secs: wait.map(|w| w.as_secs()),
                },
                wait,
            ));
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            return Err(Failed::transient(
                ProviderError::ServerError {
                    provider,
                    what: what.to_string(),
                    status: status.as_u16(),
                    message: error_text(&body),
                },
                None,
            ));
        }
        Ok(Reply { status, body })
    }
}

/// A bounded name for a failure without an answer, for the span.
fn failure_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "request"
    }
}

/// The error and its causes on one line (reqwest puts the useful part, such as "connection
/// refused", in the sources). Request URLs carry no secrets: tokens travel in headers.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How long a 429 asks us to wait, from the headers or Vercel's body.
fn rate_limit_wait(headers: &HeaderMap, body: &[u8]) -> Option<Duration> {
    if let Some(wait) = retry::retry_after(headers) {
        return Some(wait);
    }
    let json: Value = serde_json::from_slice(body).ok()?;
    let reset = json.pointer("/error/limit/reset")?.as_f64()?;
    Some(until_reset(reset))
}

/// The provider's own error message from a body in any of their shapes:
/// `{"error":{"code","message"}}` (Vercel), `{"code","message"}` (Netlify),
/// `{"errors":[{"message"}]}` (GraphQL), or plain text.
pub(crate) fn error_text(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let pick = |pointer: &str| json.pointer(pointer).and_then(Value::as_str);
        let message = pick("/error/message")
            .or_else(|| pick("/message"))
            .or_else(|| pick("/errors/0/message"))
            .or_else(|| pick("/error"));
        // Netlify's code is the HTTP status as a number; Vercel's a string.
        let code = pick("/error/code")
            .or_else(|| pick("/code"))
            .map(str::to_string)
            .or_else(|| {
                json.get("code")
                    .and_then(Value::as_i64)
                    .map(|c| c.to_string())
            });
        match (code, message) {
            (Some(code), Some(message)) => return format!("{code}: {message}"),
            (None, Some(message)) => return message.to_string(),
            (Some(code), None) => return code,
            (None, None) => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "no details given".to_string()
    } else {
        text.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_reads_every_shape() {
        assert_eq!(
            error_text(br#"{"error":{"code":"forbidden","message":"Not authorized"}}"#),
            "forbidden: Not authorized"
        );
        assert_eq!(
            error_text(br#"{"code":401,"message":"Access Denied"}"#),
            "401: Access Denied"
        );
        assert_eq!(
            error_text(br#"{"data":null,"errors":[{"message":"Not Authorized"}]}"#),
            "Not Authorized"
        );
        assert_eq!(error_text(b"Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn rate_limit_reset_forms() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(rate_limit_wait(&headers, b""), Some(Duration::from_secs(2)));
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", "3".parse().unwrap());
        assert_eq!(rate_limit_wait(&headers, b""), Some(Duration::from_secs(3)));
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-reset", past.parse().unwrap());
        assert_eq!(rate_limit_wait(&headers, b""), Some(Duration::ZERO));
        let body = br#"{"error":{"code":"rate_limited","limit":{"reset":1}}}"#;
        assert_eq!(
            rate_limit_wait(&HeaderMap::new(), body),
            Some(Duration::from_secs(1))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_attempt_is_an_http_client_span_with_its_status() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (recorder, _default) = service_runtime::span_recorder::SpanRecorder::install();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A provider that fails once (retried), then answers.
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            ] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let policy = RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            max_rate_limit_wait: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
        };
        let caller = HttpCaller::new(
            service_runtime::tls::http_client().build().unwrap(),
            policy,
            Provider::Vercel,
        );
        let reply = caller
            .send("status read", |client| {
                client
                    .get(format!(
                        "http://{addr}/v13/deployments/dpl_marker?teamId=team_1"
                    ))
                    .bearer_auth("TOKEN-MARKER")
            })
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);

        let spans = recorder.spans("http.client");
        assert_eq!(spans.len(), 2, "{spans:#?}");
        for span in &spans {
            assert_eq!(span.fields["otel.name"], "GET vercel");
            assert_eq!(span.fields["otel.kind"], "client");
            assert_eq!(span.fields["http.request.method"], "GET");
            assert_eq!(span.fields["server.address"], "127.0.0.1");
            assert_eq!(span.fields["server.port"], addr.port().to_string());
        }
        assert_eq!(spans[0].fields["http.response.status_code"], "503");
        assert_eq!(spans[0].fields["otel.status_code"], "ERROR");
        assert_eq!(spans[1].fields["http.response.status_code"], "200");
        assert!(!spans[1].fields.contains_key("otel.status_code"));
        let text = format!("{spans:?}");
        for marker in ["dpl_marker", "team_1", "TOKEN-MARKER"] {
            assert!(!text.contains(marker), "{marker} in {text}");
        }
    }
}
