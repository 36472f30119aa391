//! The `autocrea.ai.v1.AiService` gRPC server: identity, validation, one call into
//! [`Assistant`], translation of the answer.

use std::pin::Pin;
use std::sync::Arc;

use autocrea_proto::ai::v1 as pb;
use autocrea_proto::ai::v1::ai_service_server::AiService;
use futures::{Stream, StreamExt};
use service_runtime::grpc::caller;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::assistant::{Answer, Assistant, PeriodUsage, StreamItem};
use crate::error::Error;
use crate::ledger::Totals;
use crate::task::Task;

/// Metadata key with the provider time in milliseconds.
pub const PROVIDER_MS: &str = "x-provider-ms";
/// Metadata key saying whether the prompt cache answered.
pub const CACHE: &str = "x-cache";

/// The gRPC face of [`Assistant`].
#[derive(Debug, Clone)]
pub struct AiApi {
    assistant: Arc<Assistant>,
}

impl AiApi {
    /// Serves `assistant`.
    pub fn new(assistant: Arc<Assistant>) -> Self {
        Self { assistant }
    }
}

/// What the answer cost and who gave it, as every response carries it.
fn usage(answer: &Answer) -> pb::Usage {
    pb::Usage {
        tokens_used: answer.usage.input_tokens + answer.usage.output_tokens,
        input_tokens: answer.usage.input_tokens,
        output_tokens: answer.usage.output_tokens,
        model: answer.model.clone(),
        cached: answer.cached,
    }
}

fn with_timing<T>(message: T, cached: bool, provider_ms: Option<u64>) -> Response<T> {
    let mut response = Response::new(message);
    let meta = response.metadata_mut();
    meta.insert(
        CACHE,
        MetadataValue::from_static(if cached { "hit" } else { "miss" }),
    );
    if let Some(ms) = provider_ms {
        meta.insert(PROVIDER_MS, MetadataValue::from(ms));
    }
    response
}

fn respond<T>(answer: &Answer, message: T) -> Response<T> {
    with_timing(message, answer.cached, answer.provider_ms)
}

fn generate_response(task: &Task, answer: &Answer) -> pb::GenerateResponse {
    let code = answer.code(task);
    pb::GenerateResponse {
        code: code.code,
        language: task.language().map(|l| l.name()).unwrap_or_default().into(),
        explanation: code.explanation,
        usage: Some(usage(answer)),
    }
}

fn chat_response(answer: &Answer) -> pb::ChatResponse {
    pb::ChatResponse {
        message: answer.text.clone(),
        usage: Some(usage(answer)),
    }
}

fn stream_error(error: &Error, usage: crate::provider::Usage, partial: String) -> pb::StreamError {
    pb::StreamError {
        kind: error.kind().to_string(),
        message: error.to_string(),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        partial_text: partial,
    }
}

fn period(usage: PeriodUsage) -> pb::UsagePeriod {
    let mut total = Totals::default();
    let by_operation = usage
        .by_operation
        .into_iter()
        .map(|(operation, t)| {
            total.requests += t.requests;
            total.cached_requests += t.cached_requests;
            total.input_tokens += t.input_tokens;
            total.output_tokens += t.output_tokens;
            pb::OperationUsage {
                operation,
                requests: t.requests,
                cached_requests: t.cached_requests,
                input_tokens: t.input_tokens,
                output_tokens: t.output_tokens,
                tokens_used: t.input_tokens + t.output_tokens,
            }
        })
        .collect();
    pb::UsagePeriod {
        start: crate::clock::rfc3339(usage.start_ms),
        requests: total.requests,
        cached_requests: total.cached_requests,
        input_tokens: total.input_tokens,
        output_tokens: total.output_tokens,
        tokens_used: total.input_tokens + total.output_tokens,
        by_operation,
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl AiApi {
    /// One unary operation: the caller, the request validated into a task, the answer, and the
    /// answer mapped to the operation's response.
    async fn unary<Req, Resp>(
        &self,
        request: Request<Req>,
        validate: fn(&Req, &crate::Limits) -> crate::error::Result<Task>,
        map: impl FnOnce(&Task, &Answer) -> Resp,
    ) -> Result<Response<Resp>, Status> {
        let user = caller(&request)?;
        let task = validate(request.get_ref(), self.assistant.limits())?;
        let answer = self.assistant.answer(&user, &task).await?;
        Ok(respond(&answer, map(&task, &answer)))
    }

    async fn stream<T: Send + 'static>(
        &self,
        user: &str,
        task: Task,
        map: impl Fn(&Task, StreamItem) -> T + Send + Sync + 'static,
    ) -> Result<Response<EventStream<T>>, Status> {
        let (items, first_ms) = self.assistant.stream(user, task.clone()).await?;
        let events = items.map(move |item| Ok(map(&task, item)));
        Ok(with_timing(
            Box::pin(events) as EventStream<T>,
            first_ms.is_none(),
            first_ms,
        ))
    }
}

#[tonic::async_trait]
impl AiService for AiApi {
    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<pb::GenerateResponse>, Status> {
        self.unary(request, Task::generate, generate_response).await
    }

    type GenerateStreamStream = EventStream<pb::GenerateStreamEvent>;

    async fn generate_stream(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStreamStream>, Status> {
        use pb::generate_stream_event::Event;
        let user = caller(&request)?;
        let task = Task::generate(request.get_ref(), self.assistant.limits())?;
        self.stream(&user, task, |task, item| pb::GenerateStreamEvent {
            event: Some(match item {
                StreamItem::Delta(text) => Event::Delta(pb::TokenDelta { text }),
                StreamItem::Done(answer) => Event::Done(generate_response(task, &answer)),
                StreamItem::Failed {
                    error,
                    usage,
                    partial_text,
                } => Event::Error(stream_error(&error, usage, partial_text)),
            }),
        })
        .await
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        self.unary(request, Task::explain, |task, answer| pb::ExplainResponse {
            explanation: answer.text.trim().to_string(),
            language: task.language().map(|l| l.name()).unwrap_or_default().into(),
            usage: Some(usage(answer)),
        })
        .await
    }

    async fn fix(
        &self,
        request: Request<pb::FixRequest>,
    ) -> Result<Response<pb::FixResponse>, Status> {
        self.unary(request, Task::fix, |task, answer| {
            let g = generate_response(task, answer);
            pb::FixResponse {
                code: g.code,
                explanation: g.explanation,
                language: g.language,
                usage: g.usage,
            }
        })
        .await
    }

    async fn refactor(
        &self,
        request: Request<pb::RefactorRequest>,
    ) -> Result<Response<pb::RefactorResponse>, Status> {
        self.unary(request, Task::refactor, |task, answer| {
            let g = generate_response(task, answer);
            pb::RefactorResponse {
                code: g.code,
                explanation: g.explanation,
                language: g.language,
                usage: g.usage,
            }
        })
        .await
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        self.unary(request, Task::complete, |task, answer| {
            let g = generate_response(task, answer);
            pb::CompleteResponse {
                completion: g.code,
                language: g.language,
                usage: g.usage,
            }
        })
        .await
    }

    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<pb::ChatResponse>, Status> {
        self.unary(request, Task::chat, |_, answer| chat_response(answer))
            .await
    }

    type ChatStreamStream = EventStream<pb::ChatStreamEvent>;

    async fn chat_stream(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<Self::ChatStreamStream>, Status> {
        use pb::chat_stream_event::Event;
        let user = caller(&request)?;
        let task = Task::chat(request.get_ref(), self.assistant.limits())?;
        self.stream(&user, task, |_, item| pb::ChatStreamEvent {
            event: Some(match item {
                StreamItem::Delta(text) => Event::Delta(pb::TokenDelta { text }),
                StreamItem::Done(answer) => Event::Done(chat_response(&answer)),
                StreamItem::Failed {
                    error,
                    usage,
                    partial_text,
                } => Event::Error(stream_error(&error, usage, partial_text)),
            }),
        })
        .await
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let user = caller(&request)?;
        let report = self.assistant.usage(&user).await?;
        let month = period(report.month);
        let remaining = report.budget.map(|b| b.saturating_sub(month.tokens_used));
        Ok(Response::new(pb::GetUsageResponse {
            day: Some(period(report.day)),
            month: Some(month),
            monthly_token_budget: report.budget,
            monthly_tokens_remaining: remaining,
        }))
    }
}
