//! AI provider clients over their real wire protocols: Anthropic Messages and OpenAI-compatible
//! chat completions, JSON and SSE, with timeouts and retries.

mod anthropic;
mod failure;
mod openai;
pub mod sse;

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use service_runtime::retry::{self, RetryPolicy};
use service_runtime::telemetry::{record_http_failure, record_http_status};
use tracing::Instrument;

use crate::config::{ProviderConfig, ProviderKind};
use crate::error::{Error, Result};
use failure::{Failure, attempt_failure, send_failure, status_failure, stream_error};
use sse::{SseDecoder, SseEvent};

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// Wire name, the same in both protocols.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Text.
    pub content: String,
}

/// What we ask the model, independent of the wire protocol.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// System prompt.
    pub system: String,
    /// Conversation, oldest first, ending with a user message.
    pub messages: Vec<Message>,
    /// Output token cap.
    pub max_tokens: u32,
    /// Sampling temperature, provider default when `None`.
    pub temperature: Option<f32>,
}

/// Tokens a provider adds around each message (role markers, separators), rounded up.
const TOKENS_PER_MESSAGE: u64 = 8;
/// Tokens a provider adds around the whole prompt, rounded up.
const TOKENS_PER_REQUEST: u64 = 32;

impl ModelRequest {
    /// The most tokens this request can be billed: the output cap plus an upper bound of the
    /// prompt. Tokenizers of both wire protocols are byte-level (every token covers at least
    /// one byte of UTF-8), so the prompt's bytes plus the framing bound its tokens whatever
    /// the model. Held against the monthly budget while the call runs.
    pub fn max_billable_tokens(&self) -> u64 {
        let text = |s: &str| u64::try_from(s.len()).unwrap_or(u64::MAX);
        let messages = self.messages.iter().fold(0u64, |sum, m| {
            sum.saturating_add(text(&m.content))
                .saturating_add(TOKENS_PER_MESSAGE)
        });
        text(&self.system)
            .saturating_add(messages)
            .saturating_add(TOKENS_PER_REQUEST)
            .saturating_add(u64::from(self.max_tokens))
    }
}

/// Tokens billed for one call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every prompt token, cache reads and writes included.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache (Anthropic).
    pub cache_write_tokens: u64,
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The model's text.
    pub text: String,
    /// Tokens billed.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
}

/// A piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// More text.
    Delta(String),
    /// The provider said the answer is complete.
    Finished,
}

/// Client of the configured provider.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    config: ProviderConfig,
    retry: RetryPolicy,
    http: reqwest::Client,
    url: String,
    /// Host and port of `url`, for the spans.
    host: String,
    port: Option<u16>,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A streamed answer, already past its first token (or finished). Dropping it closes the
/// connection to the provider, which cancels the generation.
pub struct TokenStream {
    body: ByteStream,
    decoder: SseDecoder,
    state: StreamState,
    pending: VecDeque<Chunk>,
    /// A failure read in the same batch as chunks before it: returned once those are handed out.
    failed: Option<Box<Failure>>,
    done: bool,
    fallback_model: String,
}

impl std::fmt::Debug for TokenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum StreamState {
    Anthropic(anthropic::StreamState),
    OpenAi(openai::StreamState),
}

impl StreamState {
    fn on_event(&mut self, event: &SseEvent) -> Result<Option<Chunk>, Failure> {
        match self {
            Self::Anthropic(s) => s.on_event(event),
            Self::OpenAi(s) => s.on_event(event),
        }
    }

    fn usage(&self) -> Usage {
        match self {
            Self::Anthropic(s) => s.usage(),
            Self::OpenAi(s) => s.usage(),
        }
    }

    fn model(&self) -> Option<&str> {
        match self {
            Self::Anthropic(s) => s.model(),
            Self::OpenAi(s) => s.model(),
        }
    }
}

impl TokenStream {
    /// The next chunk; `None` after [`Chunk::Finished`] or an error.
    pub async fn next(&mut self) -> Option<Result<Chunk>> {
        match self.next_chunk().await {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => None,
            Err(failure) => {
                self.done = true;
                Some(Err(failure.error))
            }
        }
    }

    /// Usage reported so far (complete once finished).
    pub fn usage(&self) -> Usage {
        self.state.usage()
    }

    /// The model that answers.
    pub fn model(&self) -> String {
        self.state
            .model()
            .map(str::to_string)
            .unwrap_or_else(|| self.fallback_model.clone())
    }

    async fn next_chunk(&mut self) -> Result<Option<Chunk>, Failure> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                if chunk == Chunk::Finished {
                    self.done = true;
                }
                return Ok(Some(chunk));
            }
            if let Some(failure) = self.failed.take() {
                return Err(*failure);
            }
            if self.done {
                return Ok(None);
            }
            let events = match self.body.next().await {
                Some(Ok(bytes)) => self.decoder.push(&bytes),
                Some(Err(e)) => return Err(send_failure(&e)),
                None => {
                    let last = self.decoder.finish();
                    if last.is_none() {
                        return Err(Failure::transient(
                            Error::ProviderUnavailable {
                                reason: "the provider closed the stream before its end".into(),
                                retry_after: Duration::from_secs(1),
                            },
                            None,
                        ));
                    }
                    last.into_iter().collect()
                }
            };
            // Text that came before an error event in the same read is still the caller's.
            for event in &events {
                match self.state.on_event(event) {
                    Ok(Some(chunk)) => self.pending.push_back(chunk),
                    Ok(None) => {}
                    Err(failure) => {
                        self.failed = Some(Box::new(failure));
                        break;
                    }
                }
            }
        }
    }
}

impl ProviderClient {
    /// A client for `config`.
    pub fn new(config: ProviderConfig) -> anyhow::Result<Self> {
        let http = service_runtime::tls::http_client()
            .connect_timeout(config.timeouts.connect)
            .user_agent(concat!("autocrea-ai-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = config.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let url = match config.kind {
            ProviderKind::Anthropic => format!("{base}/v1/messages"),
            ProviderKind::OpenAi => format!("{base}/v1/chat/completions"),
        };
        let parsed = reqwest::Url::parse(&url)?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let port = parsed.port_or_known_default();
        Ok(Self {
            retry: config.retry.into(),
            config,
            http,
            url,
            host,
            port,
        })
    }

    /// The configured model.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// The provider's wire protocol.
    pub fn kind(&self) -> ProviderKind {
        self.config.kind
    }

    /// The longest a call can last, retries included: no retry starts after `max_elapsed` and
    /// every attempt, body included, ends within `total`.
    pub fn longest_call(&self) -> Duration {
        self.config.retry.max_elapsed + self.config.timeouts.total
    }

    /// Asks for a whole answer, retrying transient failures.
    pub async fn complete(&self, request: &ModelRequest) -> Result<Completion> {
        let provider = self.config.kind.as_str();
        let started = Instant::now();
        let span = tracing::info_span!("ai.provider", provider, model = %self.config.model);
        let result = with_retries(&self.retry, provider, || self.complete_once(request))
            .instrument(span)
            .await;
        crate::metrics::record_provider_call(provider, result.is_ok(), started.elapsed());
        let mut completion = result?;
        if completion.model.is_empty() {
            completion.model = self.config.model.clone();
        }
        Ok(completion)
    }

    /// Opens a streamed answer, retrying transient failures until the first token arrives.
    pub async fn stream(&self, request: &ModelRequest) -> Result<TokenStream> {
        let provider = self.config.kind.as_str();
        let started = Instant::now();
        let span = tracing::info_span!("ai.provider", provider, model = %self.config.model);
        let result = with_retries(&self.retry, provider, || self.stream_once(request))
            .instrument(span)
            .await;
        crate::metrics::record_provider_call(provider, result.is_ok(), started.elapsed());
        result
    }

    fn post(&self, request: &ModelRequest, stream: bool) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .post(&self.url)
            .timeout(self.config.timeouts.total);
        let (builder, body) = match self.config.kind {
            ProviderKind::Anthropic => {
                let mut b = builder.header("anthropic-version", anthropic::VERSION);
                if let Some(key) = &self.config.api_key {
                    b = b.header("x-api-key", key.expose_secret());
                }
                (b, anthropic::body(&self.config.model, request, stream))
            }
            ProviderKind::OpenAi => {
                let mut b = builder;
                if let Some(key) = &self.config.api_key {
                    b = b.bearer_auth(key.expose_secret());
                }
                (b, openai::body(&self.config.model, request, stream))
            }
        };
        let builder = if stream {
            builder.header("accept", "text/event-stream")
        } else {
            builder
        };
        builder.json(&body)
    }

    /// The `http.client` span of one attempt (a child of the `ai.provider` span).
    fn attempt_span(&self) -> tracing::Span {
        service_runtime::telemetry::http_client_span(
            "POST",
            &self.host,
            self.port,
            self.config.kind.as_str(),
        )
    }

    async fn complete_once(&self, request: &ModelRequest) -> Result<Completion, Failure> {
        let span = self.attempt_span();
        async {
            let response = self
                .post(request, false)
                .send()
                .await
                .map_err(|e| attempt_failure(&span, &e))?;
            let status = response.status();
            record_http_status(&span, status.as_u16());
            let headers = response.headers().clone();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| attempt_failure(&span, &e))?;
            if !status.is_success() {
                return Err(status_failure(status.as_u16(), &headers, &bytes));
            }
            match self.config.kind {
                ProviderKind::Anthropic => anthropic::parse(&bytes),
                ProviderKind::OpenAi => openai::parse(&bytes),
            }
            .map_err(Failure::permanent)
        }
        .instrument(span.clone())
        .await
    }

    async fn stream_once(&self, request: &ModelRequest) -> Result<TokenStream, Failure> {
        let span = self.attempt_span();
        self.open_stream(request, &span)
            .instrument(span.clone())
            .await
    }

    /// One streamed attempt, up to its first token.
    async fn open_stream(
        &self,
        request: &ModelRequest,
        span: &tracing::Span,
    ) -> Result<TokenStream, Failure> {
        let send = self.post(request, true).send();
        let response = tokio::time::timeout(self.config.timeouts.first_byte, send)
            .await
            .map_err(|_| {
                record_http_failure(span, "timeout");
                Failure::transient(Error::ProviderTimeout("no first byte in time"), None)
            })?
            .map_err(|e| attempt_failure(span, &e))?;
        let status = response.status();
        record_http_status(span, status.as_u16());
        if !status.is_success() {
            let headers = response.headers().clone();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| attempt_failure(span, &e))?;
            return Err(status_failure(status.as_u16(), &headers, &bytes));
        }
        let mut stream = TokenStream {
            body: Box::pin(response.bytes_stream()),
            decoder: SseDecoder::default(),
            state: match self.config.kind {
                ProviderKind::Anthropic => StreamState::Anthropic(Default::default()),
                ProviderKind::OpenAi => StreamState::OpenAi(Default::default()),
            },
            pending: VecDeque::new(),
            failed: None,
            done: false,
            fallback_model: self.config.model.clone(),
        };
        // Read up to the first token so that an early failure (an `error` event after the 200,
        // a dropped connection) can still be retried invisibly to the caller.
        let first = stream.next_chunk().await.inspect_err(|_| {
            record_http_failure(span, "stream");
        })?;
        match first {
            Some(chunk) => {
                stream.done = chunk == Chunk::Finished;
                stream.pending.push_front(chunk);
            }
            None => {
                return Err(Failure::permanent(Error::ProviderProtocol(
                    "empty stream".into(),
                )));
            }
        }
        Ok(stream)
    }
}

/// Runs `attempt` under `policy`, counting every failed attempt; a provider that stays
/// unavailable is reported with when to try again.
async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    provider: &'static str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let counted = || {
        let attempt = attempt();
        async move {
            attempt.await.inspect_err(|failure| {
                crate::metrics::record_provider_error(provider, failure.retryable);
            })
        }
    };
    policy
        .run(counted)
        .await
        .map_err(|gave_up: retry::GaveUp<Error>| match gave_up.error {
            Error::ProviderUnavailable { reason, .. } => Error::ProviderUnavailable {
                reason,
                retry_after: gave_up.retry_after,
            },
            other => other,
        })
}
