//! The conversions between the JSON API's AI types and ai-service's messages: a body becomes its
//! request, an answer its result, field by field and nowhere else.

use super::*;

impl From<GenerateBody> for pb::GenerateRequest {
    fn from(body: GenerateBody) -> Self {
        Self {
            prompt: body.prompt,
            language: body.language,
            framework: body.framework,
        }
    }
}

impl From<pb::GenerateResponse> for GenerateResult {
    fn from(r: pb::GenerateResponse) -> Self {
        Self {
            code: r.code,
            language: r.language,
            explanation: r.explanation,
            usage: r.usage.into(),
        }
    }
}

impl From<ExplainBody> for pb::ExplainRequest {
    fn from(body: ExplainBody) -> Self {
        Self {
            code: body.code,
            language: body.language,
        }
    }
}

impl From<pb::ExplainResponse> for ExplainResult {
    fn from(r: pb::ExplainResponse) -> Self {
        Self {
            explanation: r.explanation,
            language: r.language,
            usage: r.usage.into(),
        }
    }
}

impl From<FixBody> for pb::FixRequest {
    fn from(body: FixBody) -> Self {
        Self {
            code: body.code,
            error: body.error,
            language: body.language,
        }
    }
}

impl From<pb::FixResponse> for FixResult {
    fn from(r: pb::FixResponse) -> Self {
        Self {
            code: r.code,
            explanation: r.explanation,
            language: r.language,
            usage: r.usage.into(),
        }
    }
}

impl From<RefactorBody> for pb::RefactorRequest {
    fn from(body: RefactorBody) -> Self {
        Self {
            code: body.code,
            language: body.language,
            goals: body.goals,
        }
    }
}

impl From<pb::RefactorResponse> for RefactorResult {
    fn from(r: pb::RefactorResponse) -> Self {
        Self {
            code: r.code,
            explanation: r.explanation,
            language: r.language,
            usage: r.usage.into(),
        }
    }
}

impl From<CompleteBody> for pb::CompleteRequest {
    fn from(body: CompleteBody) -> Self {
        Self {
            prefix: body.prefix,
            suffix: body.suffix,
            language: body.language,
        }
    }
}

impl From<pb::CompleteResponse> for CompleteResult {
    fn from(r: pb::CompleteResponse) -> Self {
        Self {
            completion: r.completion,
            language: r.language,
            usage: r.usage.into(),
        }
    }
}

impl From<ChatBody> for pb::ChatRequest {
    fn from(body: ChatBody) -> Self {
        Self {
            messages: body
                .messages
                .into_iter()
                .map(|m| pb::ChatMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect(),
            project_id: body.project_id,
        }
    }
}

impl From<pb::ChatResponse> for ChatResult {
    fn from(r: pb::ChatResponse) -> Self {
        Self {
            message: r.message,
            usage: r.usage.into(),
        }
    }
}

impl From<pb::GetUsageResponse> for Usage {
    fn from(r: pb::GetUsageResponse) -> Self {
        Self {
            day: r.day.unwrap_or_default().into(),
            month: r.month.unwrap_or_default().into(),
            monthly_token_budget: r.monthly_token_budget,
            monthly_tokens_remaining: r.monthly_tokens_remaining,
        }
    }
}

impl From<Option<pb::Usage>> for AnswerUsage {
    fn from(usage: Option<pb::Usage>) -> Self {
        let usage = usage.unwrap_or_default();
        Self {
            tokens_used: usage.tokens_used,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            model: usage.model,
            cached: usage.cached,
        }
    }
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
