//! `/api/ai`: generate, explain, fix, refactor and complete code, chat about it, and read one's
//! token usage, backed by ai-service. `generate` and `chat` stream as server-sent events when the
//! client sends `Accept: text/event-stream`.
//!
//! Every response carries `Server-Timing`, splitting the time spent waiting for the AI provider
//! (`provider`, from ai-service's `x-provider-ms`) from our own (`gateway`: gateway plus
//! ai-service), and `X-Cache: hit|miss` when ai-service said whether its prompt cache answered.

use std::future::Future;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use autocrea_proto::ai::v1 as pb;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::downstream::request;
use crate::identity::Caller;
use crate::problem::{ApiError, Problem};
use crate::routes::schema;
use crate::sse;
use crate::state::AppState;

const SERVICE: &str = "ai-service";
/// Metadata from ai-service: milliseconds spent waiting for the provider.
const PROVIDER_MS: &str = "x-provider-ms";
/// Metadata from ai-service: `hit` or `miss` of the prompt cache.
const CACHE: &str = "x-cache";

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(generate, explain, fix, refactor, complete, chat, usage),
    components(schemas(
        GenerateBody,
        GenerateResult,
        ExplainBody,
        ExplainResult,
        FixBody,
        FixResult,
        RefactorBody,
        RefactorResult,
        CompleteBody,
        CompleteResult,
        ChatBody,
        ChatMessage,
        ChatResult,
        Usage,
        UsagePeriod,
        OperationUsage,
        DeltaEvent,
        StreamErrorEvent,
    )),
    tags((name = "ai", description = "AI code operations and usage"))
)]
pub struct AiApi;

// Request bodies. String fields default to empty so that a missing field reaches ai-service's
// validation and comes back as a per-field error, like any other invalid value. Their schemas
// state ai-service's limits (`ai_service::config::Limits` defaults).

/// The names and aliases of the languages ai-service takes (`ai.proto` lists them; any case).
#[rustfmt::skip]
pub const LANGUAGES: &[&str] = &[
    "python", "py", "python3", "javascript", "js", "jsx", "node", "nodejs", "typescript", "ts",
    "tsx", "rust", "rs", "go", "golang", "java", "kotlin", "kt", "swift", "c", "h", "cpp", "c++",
    "cxx", "cc", "hpp", "csharp", "c#", "cs", "ruby", "rb", "php", "html", "htm", "css", "sql",
    "bash", "sh", "shell", "zsh", "json", "yaml", "yml",
];

/// A language ai-service takes: a name or an alias of one (also in upper case).
pub struct AiLanguage;

impl utoipa::PartialSchema for AiLanguage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        schema::one_of(LANGUAGES)
            .description(Some(
                "A language ai-service takes: a name or an alias of one (also in upper case)",
            ))
            .into()
    }
}

impl ToSchema for AiLanguage {}

/// Who wrote a chat message.
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: `ChatMessage.role` is checked by ai-service.
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// Body of `POST /api/ai/generate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateBody {
    /// What to build; at most 10,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<10_000>)]
    pub prompt: String,
    /// Target language, e.g. `python`, `ts`, `rust`.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
    /// Framework or library, e.g. `react`; at most 100 characters.
    #[schema(max_length = 100)]
    pub framework: Option<String>,
}

/// Generated code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResult {
    /// The code, without Markdown fences.
    pub code: String,
    /// Canonical language name.
    pub language: String,
    /// What the model said next to the code (may be empty).
    pub explanation: String,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// Prompt tokens billed by the provider.
    pub input_tokens: u64,
    /// Tokens the model wrote.
    pub output_tokens: u64,
    /// The model that answered.
    pub model: String,
    /// True when answered from the prompt cache (no tokens spent).
    pub cached: bool,
}

impl From<pb::GenerateResponse> for GenerateResult {
    fn from(r: pb::GenerateResponse) -> Self {
        Self {
            code: r.code,
            language: r.language,
            explanation: r.explanation,
            tokens_used: r.tokens_used,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            model: r.model,
            cached: r.cached,
        }
    }
}

/// Body of `POST /api/ai/explain`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExplainBody {
    /// The code; at most 60,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<60_000>)]
    pub code: String,
    /// Its language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
}

/// An explanation of code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainResult {
    /// What the code does (Markdown).
    pub explanation: String,
    /// Canonical language name.
    pub language: String,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// Prompt tokens billed by the provider.
    pub input_tokens: u64,
    /// Tokens the model wrote.
    pub output_tokens: u64,
    /// The model that answered.
    pub model: String,
    /// True when answered from the prompt cache.
    pub cached: bool,
}

/// Body of `POST /api/ai/fix`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixBody {
    /// The failing code; at most 60,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<60_000>)]
    pub code: String,
    /// The error message or wrong behaviour; at most 10,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<10_000>)]
    pub error: String,
    /// Its language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
}

/// Fixed code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FixResult {
    /// The whole fixed code, without Markdown fences.
    pub code: String,
    /// What was wrong and what changed.
    pub explanation: String,
    /// Canonical language name.
    pub language: String,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// Prompt tokens billed by the provider.
    pub input_tokens: u64,
    /// Tokens the model wrote.
    pub output_tokens: u64,
    /// The model that answered.
    pub model: String,
    /// True when answered from the prompt cache.
    pub cached: bool,
}

/// Body of `POST /api/ai/refactor`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefactorBody {
    /// The code; at most 60,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<60_000>)]
    pub code: String,
    /// Its language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
    /// Goals, e.g. "extract functions, add types"; at most 2,000 characters.
    #[schema(max_length = 2_000)]
    pub goals: Option<String>,
}

/// Refactored code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefactorResult {
    /// The refactored code, without Markdown fences.
    pub code: String,
    /// What changed and why.
    pub explanation: String,
    /// Canonical language name.
    pub language: String,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// Prompt tokens billed by the provider.
    pub input_tokens: u64,
    /// Tokens the model wrote.
    pub output_tokens: u64,
    /// The model that answered.
    pub model: String,
    /// True when answered from the prompt cache.
    pub cached: bool,
}

/// Body of `POST /api/ai/complete`: editor auto-completion at a cursor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteBody {
    /// Code before the cursor; 1 to 20,000 characters, not blank.
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<20_000>)]
    pub prefix: String,
    /// Code after the cursor; at most 20,000 characters.
    #[schema(max_length = 20_000)]
    pub suffix: Option<String>,
    /// The language.
    #[serde(default)]
    #[schema(required = true, value_type = AiLanguage)]
    pub language: String,
}

/// A completion.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteResult {
    /// Text to insert at the cursor.
    pub completion: String,
    /// Canonical language name.
    pub language: String,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// Prompt tokens billed by the provider.
    pub input_tokens: u64,
    /// Tokens the model wrote.
    pub output_tokens: u64,
    /// The model that answered.
    pub model: String,
    /// True when answered from the prompt cache.
    pub cached: bool,
}

/// One message of a conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatMessage {
    /// `user` or `assistant`; the last message of a conversation is the user's.
    #[serde(default)]
    #[schema(required = true, value_type = ChatRole)]
    pub role: String,
    /// At most 20,000 characters, not blank (100,000 for the whole conversation).
    #[serde(default)]
    #[schema(required = true, inline, value_type = schema::NonBlankText<20_000>)]
    pub content: String,
}

/// Body of `POST /api/ai/chat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatBody {
    /// 1 to 50 messages, oldest first, ending with a `user` message.
    #[serde(default)]
    #[schema(required = true, min_items = 1, max_items = 50)]
    pub messages: Vec<ChatMessage>,
    /// The project the conversation is about (recorded with the usage).
    #[schema(schema_with = schema::chat_project_id)]
    pub project_id: Option<String>,
}

/// The assistant's reply.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatResult {
    /// The reply, as Markdown.
    pub message: String,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// Prompt tokens billed by the provider.
    pub input_tokens: u64,
    /// Tokens the model wrote.
    pub output_tokens: u64,
    /// The model that answered.
    pub model: String,
    /// Always false: conversations are never cached.
    pub cached: bool,
}

impl From<pb::ChatResponse> for ChatResult {
    fn from(r: pb::ChatResponse) -> Self {
        Self {
            message: r.message,
            tokens_used: r.tokens_used,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            model: r.model,
            cached: r.cached,
        }
    }
}

/// Token usage of one operation in a period.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationUsage {
    /// `generate`, `explain`, `fix`, `refactor`, `complete` or `chat` (streams included).
    pub operation: String,
    /// Calls answered.
    pub requests: u64,
    /// Of which answered from the prompt cache.
    pub cached_requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
}

/// Token usage in a period (the current UTC day or month).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsagePeriod {
    /// RFC 3339 start of the period.
    pub start: String,
    /// Calls answered.
    pub requests: u64,
    /// Of which answered from the prompt cache.
    pub cached_requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// `inputTokens + outputTokens`.
    pub tokens_used: u64,
    /// By operation, sorted by name.
    pub by_operation: Vec<OperationUsage>,
}

impl From<pb::UsagePeriod> for UsagePeriod {
    fn from(p: pb::UsagePeriod) -> Self {
        Self {
            start: p.start,
            requests: p.requests,
            cached_requests: p.cached_requests,
            input_tokens: p.input_tokens,
            output_tokens: p.output_tokens,
            tokens_used: p.tokens_used,
            by_operation: p
                .by_operation
                .into_iter()
                .map(|o| OperationUsage {
                    operation: o.operation,
                    requests: o.requests,
                    cached_requests: o.cached_requests,
                    input_tokens: o.input_tokens,
                    output_tokens: o.output_tokens,
                    tokens_used: o.tokens_used,
                })
                .collect(),
        }
    }
}

/// The caller's token usage.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// The current UTC day.
    pub day: UsagePeriod,
    /// The current UTC month.
    pub month: UsagePeriod,
    /// Tokens allowed per user per month, when a budget is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_token_budget: Option<u64>,
    /// Tokens left this month, when a budget is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_tokens_remaining: Option<u64>,
}

/// Data of a streamed `delta` event: the next piece of model text (Markdown included).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeltaEvent {
    /// The text.
    pub text: String,
}

/// Data of a streamed `error` event: the stream failed after its first token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamErrorEvent {
    /// `overloaded`, `timeout`, `protocol`, `interrupted`, ...
    pub kind: String,
    /// What happened.
    pub message: String,
    /// Tokens billed so far.
    pub tokens_used: u64,
    /// Prompt tokens billed so far.
    pub input_tokens: u64,
    /// Output tokens billed so far (0 when the provider had not reported them yet).
    pub output_tokens: u64,
    /// The text received before the failure.
    pub partial_text: String,
}

impl From<pb::StreamError> for StreamErrorEvent {
    fn from(e: pb::StreamError) -> Self {
        Self {
            kind: e.kind,
            message: e.message,
            tokens_used: e.input_tokens + e.output_tokens,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            partial_text: e.partial_text,
        }
    }
}

fn metadata<'a>(map: &'a tonic::metadata::MetadataMap, key: &str) -> Option<&'a str> {
    map.get(key).and_then(|v| v.to_str().ok())
}

/// Maps a status from ai-service to the error the client sees. ai-service marks its own and the
/// provider's conditions with metadata (see `ai.proto`); those get specific problems here, and
/// everything else goes through the gateway-wide [`ApiError::from_status`].
pub fn ai_error(status: &tonic::Status) -> ApiError {
    ApiError::from_status_with(status, SERVICE, ai_detail)
}

/// What ai-service says about its failures beyond the gRPC code (`x-ai-error`, the provider's
/// `x-upstream-error` and `retry-after` in metadata), as problems of their own; `None` for the
/// rest, which the generic mapping handles.
fn ai_detail(status: &tonic::Status) -> Option<ApiError> {
    use tonic::Code;
    let meta = status.metadata();
    let ai = metadata(meta, "x-ai-error");
    let upstream = metadata(meta, "x-upstream-error");
    let retry_after = metadata(meta, "retry-after").and_then(|v| v.parse::<u64>().ok());
    let message = status.message();
    Some(match (status.code(), ai, upstream) {
        // ai-service names the variables to set; no Retry-After: waiting does not help.
        (Code::FailedPrecondition, Some("not-configured"), _) => ApiError::custom(
            StatusCode::SERVICE_UNAVAILABLE,
            "ai-not-configured",
            "AI provider not configured",
            message,
        ),
        (Code::ResourceExhausted, Some("budget"), _) => ApiError::custom(
            StatusCode::TOO_MANY_REQUESTS,
            "ai-budget-exhausted",
            "Monthly AI token budget used up",
            message,
        )
        .with_retry_after(retry_after.unwrap_or(3600)),
        (Code::Unavailable, _, Some("overloaded")) => ApiError::custom(
            StatusCode::SERVICE_UNAVAILABLE,
            "ai-provider-unavailable",
            "AI provider unavailable",
            message,
        )
        .with_retry_after(retry_after.unwrap_or(1)),
        (Code::Unavailable, _, Some("quota")) => ApiError::custom(
            StatusCode::SERVICE_UNAVAILABLE,
            "ai-provider-quota",
            "AI provider quota used up",
            message,
        ),
        (Code::DeadlineExceeded, _, Some("timeout")) => ApiError::custom(
            StatusCode::GATEWAY_TIMEOUT,
            "ai-provider-timeout",
            "AI provider timeout",
            message,
        ),
        // A fixed text rather than ai-service's message: whatever happens upstream, a key can
        // never reach the client through this answer.
        (Code::Internal, _, Some("credentials")) => ApiError::custom(
            StatusCode::BAD_GATEWAY,
            "ai-provider-credentials",
            "AI provider rejected our credentials",
            "the AI provider rejected the service's credentials; an operator must check the \
             configured API key",
        ),
        (Code::Internal, _, Some("rejected")) => ApiError::custom(
            StatusCode::BAD_GATEWAY,
            "ai-provider-rejected",
            "AI provider refused the request",
            message,
        ),
        (Code::Internal, _, Some("protocol")) => ApiError::custom(
            StatusCode::BAD_GATEWAY,
            "ai-provider-protocol",
            "AI provider answered unreadably",
            message,
        ),
        _ => return None,
    })
}

/// Times one request and writes `Server-Timing`.
struct Timing {
    started: Instant,
}

impl Timing {
    fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// `provider;dur=P, gateway;dur=G, total;dur=T` in milliseconds, where `gateway` is ours
    /// (gateway plus ai-service); without provider time (cache hits, usage, errors), `gateway`
    /// is the whole of it.
    fn header(&self, provider_ms: Option<u64>) -> String {
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
    fn apply(&self, builder: &mut HttpResponseBuilder, meta: &tonic::metadata::MetadataMap) {
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
    fn error(&self, error: &ApiError) -> HttpResponse {
        let mut response = error.error_response();
        if let Ok(value) = HeaderValue::from_str(&self.header(None)) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("server-timing"), value);
        }
        response
    }

    /// Answers a unary call: its message mapped to JSON, or its status mapped to a problem.
    async fn unary<M, T: Serialize>(
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

/// What one gRPC stream event becomes.
enum Frame {
    /// A `delta` event.
    Delta(String),
    /// The final `done` event, already rendered.
    Done(Bytes),
    /// The final `error` event.
    Error(pb::StreamError),
}

/// What one outcome of an AI gRPC stream sends: `delta` events as tokens arrive, then one
/// `done` or `error`. A stream that ends or breaks without its final event (ai-service went
/// away) ends with an `interrupted` error rather than leave the client guessing whether the
/// answer is complete.
fn ai_step<T>(
    frame: fn(T) -> Option<Frame>,
) -> impl FnMut(Result<Option<T>, tonic::Status>) -> sse::Step {
    move |outcome| match outcome {
        Ok(Some(message)) => match frame(message) {
            Some(Frame::Delta(text)) => {
                sse::Step::Continue(Some(sse::event("delta", &DeltaEvent { text })))
            }
            Some(Frame::Done(bytes)) => sse::Step::Finish(Some(bytes)),
            Some(Frame::Error(e)) => {
                sse::Step::Finish(Some(sse::event("error", &StreamErrorEvent::from(e))))
            }
            None => sse::Step::Continue(None),
        },
        Ok(None) => sse::Step::Finish(Some(interrupted())),
        Err(status) => {
            tracing::warn!(code = ?status.code(), grpc_message = status.message(), "AI stream broke off");
            sse::Step::Finish(Some(interrupted()))
        }
    }
}

fn interrupted() -> Bytes {
    sse::event(
        "error",
        &StreamErrorEvent {
            kind: "interrupted".into(),
            message: "the AI stream ended before its final event; try again".into(),
            tokens_used: 0,
            input_tokens: 0,
            output_tokens: 0,
            partial_text: String::new(),
        },
    )
}

/// Opens a stream and answers with its events, or with a problem when it fails before its
/// first token. The caller's stream slot is taken before the call; closing the connection, or
/// not reading for the write timeout, drops the gRPC stream, which resets it and makes
/// ai-service cancel the provider call.
async fn streamed<T: Send + 'static, C>(
    state: &AppState,
    caller: &Caller,
    timing: &Timing,
    call: impl FnOnce() -> C,
    frame: fn(T) -> Option<Frame>,
) -> HttpResponse
where
    C: Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
{
    let slot = match state.streams.open(caller) {
        Ok(slot) => slot,
        Err(error) => return timing.error(&error),
    };
    match call().await {
        Ok(response) => {
            let mut builder = HttpResponse::Ok();
            timing.apply(&mut builder, response.metadata());
            slot.respond(builder, response.into_inner(), ai_step(frame))
        }
        Err(status) => timing.error(&ai_error(&status)),
    }
}

fn generate_frame(e: pb::GenerateStreamEvent) -> Option<Frame> {
    use pb::generate_stream_event::Event;
    Some(match e.event? {
        Event::Delta(d) => Frame::Delta(d.text),
        Event::Done(done) => Frame::Done(sse::event("done", &GenerateResult::from(done))),
        Event::Error(error) => Frame::Error(error),
    })
}

fn chat_frame(e: pb::ChatStreamEvent) -> Option<Frame> {
    use pb::chat_stream_event::Event;
    Some(match e.event? {
        Event::Delta(d) => Frame::Delta(d.text),
        Event::Done(done) => Frame::Done(sse::event("done", &ChatResult::from(done))),
        Event::Error(error) => Frame::Error(error),
    })
}

/// Generate code from a prompt. With `Accept: text/event-stream` the answer streams: `delta`
/// events (`{"text"}`, raw model text) as tokens arrive, then one `done` event with the
/// `GenerateResult` and its usage, or an `error` event (`StreamErrorEvent`, usage so far) when
/// the provider fails mid-way. Closing the connection cancels the provider call.
#[utoipa::path(
    post, path = "/api/ai/generate", tag = "ai",
    request_body = GenerateBody,
    responses(
        (status = 200, description = "Generated code, or its event stream", content(
            (GenerateResult = "application/json"),
            (String = "text/event-stream"),
        ), headers(("server-timing" = String, description = "provider and own time"))),
        (status = 400, description = "Invalid input, per field", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or the monthly token budget is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The AI provider refused our credentials or the request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No AI provider configured, or the provider is overloaded (see Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The AI provider did not answer in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn generate(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<GenerateBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let body = body.into_inner();
    let message = pb::GenerateRequest {
        prompt: body.prompt,
        language: body.language,
        framework: body.framework,
    };
    let mut client = state.downstream.ai.clone();
    if sse::wants_stream(&req) {
        let call = || client.generate_stream(request(&caller, message));
        streamed(&state, &caller, &timing, call, generate_frame).await
    } else {
        let call = client.generate(request(&caller, message));
        timing.unary(call, GenerateResult::from).await
    }
}

/// Explain what a piece of code does.
#[utoipa::path(
    post, path = "/api/ai/explain", tag = "ai",
    request_body = ExplainBody,
    responses(
        (status = 200, description = "The explanation", body = ExplainResult),
        (status = 400, description = "Invalid input, per field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or the monthly token budget is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The AI provider refused our credentials or the request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No AI provider configured, or the provider is overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn explain(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ExplainBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let body = body.into_inner();
    let message = pb::ExplainRequest {
        code: body.code,
        language: body.language,
    };
    let mut client = state.downstream.ai.clone();
    timing
        .unary(client.explain(request(&caller, message)), |r| {
            ExplainResult {
                explanation: r.explanation,
                language: r.language,
                tokens_used: r.tokens_used,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                model: r.model,
                cached: r.cached,
            }
        })
        .await
}

/// Fix code given the error it produces: the whole fixed code and what was wrong.
#[utoipa::path(
    post, path = "/api/ai/fix", tag = "ai",
    request_body = FixBody,
    responses(
        (status = 200, description = "The fixed code", body = FixResult),
        (status = 400, description = "Invalid input, per field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or the monthly token budget is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The AI provider refused our credentials or the request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No AI provider configured, or the provider is overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn fix(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<FixBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let body = body.into_inner();
    let message = pb::FixRequest {
        code: body.code,
        error: body.error,
        language: body.language,
    };
    let mut client = state.downstream.ai.clone();
    timing
        .unary(client.fix(request(&caller, message)), |r| FixResult {
            code: r.code,
            explanation: r.explanation,
            language: r.language,
            tokens_used: r.tokens_used,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            model: r.model,
            cached: r.cached,
        })
        .await
}

/// Refactor code, optionally towards stated goals.
#[utoipa::path(
    post, path = "/api/ai/refactor", tag = "ai",
    request_body = RefactorBody,
    responses(
        (status = 200, description = "The refactored code", body = RefactorResult),
        (status = 400, description = "Invalid input, per field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or the monthly token budget is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The AI provider refused our credentials or the request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No AI provider configured, or the provider is overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn refactor(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<RefactorBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let body = body.into_inner();
    let message = pb::RefactorRequest {
        code: body.code,
        language: body.language,
        goals: body.goals,
    };
    let mut client = state.downstream.ai.clone();
    timing
        .unary(client.refactor(request(&caller, message)), |r| {
            RefactorResult {
                code: r.code,
                explanation: r.explanation,
                language: r.language,
                tokens_used: r.tokens_used,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                model: r.model,
                cached: r.cached,
            }
        })
        .await
}

/// Editor auto-completion: the text to insert between `prefix` and `suffix`. Short and fast.
#[utoipa::path(
    post, path = "/api/ai/complete", tag = "ai",
    request_body = CompleteBody,
    responses(
        (status = 200, description = "The completion", body = CompleteResult),
        (status = 400, description = "Invalid input, per field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or the monthly token budget is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The AI provider refused our credentials or the request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No AI provider configured, or the provider is overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn complete(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CompleteBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let body = body.into_inner();
    let message = pb::CompleteRequest {
        prefix: body.prefix,
        suffix: body.suffix,
        language: body.language,
    };
    let mut client = state.downstream.ai.clone();
    timing
        .unary(client.complete(request(&caller, message)), |r| {
            CompleteResult {
                completion: r.completion,
                language: r.language,
                tokens_used: r.tokens_used,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                model: r.model,
                cached: r.cached,
            }
        })
        .await
}

/// Multi-turn chat about code. With `Accept: text/event-stream` the reply streams like
/// `generate`'s, the `done` event carrying a `ChatResult`. Conversations are never cached.
#[utoipa::path(
    post, path = "/api/ai/chat", tag = "ai",
    request_body = ChatBody,
    responses(
        (status = 200, description = "The reply, or its event stream", content(
            (ChatResult = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "Invalid input, per field", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited, or the monthly token budget is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The AI provider refused our credentials or the request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No AI provider configured, or the provider is overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn chat(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<ChatBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let body = body.into_inner();
    let message = pb::ChatRequest {
        messages: body
            .messages
            .into_iter()
            .map(|m| pb::ChatMessage {
                role: m.role,
                content: m.content,
            })
            .collect(),
        project_id: body.project_id,
    };
    let mut client = state.downstream.ai.clone();
    if sse::wants_stream(&req) {
        let call = || client.chat_stream(request(&caller, message));
        streamed(&state, &caller, &timing, call, chat_frame).await
    } else {
        let call = client.chat(request(&caller, message));
        timing.unary(call, ChatResult::from).await
    }
}

/// The caller's token usage for the current UTC day and month, by operation, and what is left
/// of the monthly budget when there is one.
#[utoipa::path(
    get, path = "/api/ai/usage", tag = "ai",
    responses(
        (status = 200, description = "The caller's usage", body = Usage),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn usage(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    let timing = Timing::start();
    let mut client = state.downstream.ai.clone();
    timing
        .unary(
            client.get_usage(request(&caller, pb::GetUsageRequest {})),
            |r| Usage {
                day: r.day.unwrap_or_default().into(),
                month: r.month.unwrap_or_default().into(),
                monthly_token_budget: r.monthly_token_budget,
                monthly_tokens_remaining: r.monthly_tokens_remaining,
            },
        )
        .await
}

/// Registers the routes of this module on the `/api/ai` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/generate").post(generate))
        .service(web::resource("/explain").post(explain))
        .service(web::resource("/fix").post(fix))
        .service(web::resource("/refactor").post(refactor))
        .service(web::resource("/complete").post(complete))
        .service(web::resource("/chat").post(chat))
        .service(web::resource("/usage").get(usage));
}
