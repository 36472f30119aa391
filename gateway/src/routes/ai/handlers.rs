//! The `/api/ai` handlers: read the caller and body, call ai-service, map the answer.

use super::*;

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
    let message = pb::GenerateRequest::from(body.into_inner());
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
    ),
    security(("bearer" = []))
)]
pub async fn explain(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<ExplainBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let mut client = state.downstream.ai.clone();
    let call = client.explain(request(&caller, body.into_inner().into()));
    timing.unary(call, ExplainResult::from).await
}

/// Fix code given the error it produces: the whole fixed code and what was wrong.
#[utoipa::path(
    post, path = "/api/ai/fix", tag = "ai",
    request_body = FixBody,
    responses(
        (status = 200, description = "The fixed code", body = FixResult),
    ),
    security(("bearer" = []))
)]
pub async fn fix(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<FixBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let mut client = state.downstream.ai.clone();
    let call = client.fix(request(&caller, body.into_inner().into()));
    timing.unary(call, FixResult::from).await
}

/// Refactor code, optionally towards stated goals.
#[utoipa::path(
    post, path = "/api/ai/refactor", tag = "ai",
    request_body = RefactorBody,
    responses(
        (status = 200, description = "The refactored code", body = RefactorResult),
    ),
    security(("bearer" = []))
)]
pub async fn refactor(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<RefactorBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let mut client = state.downstream.ai.clone();
    let call = client.refactor(request(&caller, body.into_inner().into()));
    timing.unary(call, RefactorResult::from).await
}

/// Editor auto-completion: the text to insert between `prefix` and `suffix`. Short and fast.
#[utoipa::path(
    post, path = "/api/ai/complete", tag = "ai",
    request_body = CompleteBody,
    responses(
        (status = 200, description = "The completion", body = CompleteResult),
    ),
    security(("bearer" = []))
)]
pub async fn complete(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CompleteBody>,
) -> HttpResponse {
    let timing = Timing::start();
    let mut client = state.downstream.ai.clone();
    let call = client.complete(request(&caller, body.into_inner().into()));
    timing.unary(call, CompleteResult::from).await
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
    let message = pb::ChatRequest::from(body.into_inner());
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
    let call = client.get_usage(request(&caller, pb::GetUsageRequest {}));
    timing.unary(call, Usage::from).await
}
