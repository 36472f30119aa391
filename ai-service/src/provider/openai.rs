//! OpenAI-compatible chat completions wire format (OpenAI, Ollama, llama.cpp, vLLM).

use serde::Deserialize;
use serde_json::{Value, json};

use super::sse::SseEvent;
use super::{Chunk, Completion, Failure, ModelRequest, Usage, stream_error};
use crate::error::Error;

pub(super) fn body(model: &str, request: &ModelRequest, stream: bool) -> Value {
    let mut messages = vec![json!({"role": "system", "content": request.system})];
    messages.extend(
        request
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content})),
    );
    // `max_tokens` rather than OpenAI's newer `max_completion_tokens`: every compatible server
    // (Ollama, llama.cpp, vLLM) understands it.
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

#[derive(Debug, Default, Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl RawUsage {
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cache_read_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
        }
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    delta: Option<ChoiceMessage>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

pub(super) fn parse(bytes: &[u8]) -> Result<Completion, Error> {
    let body: CompletionBody = serde_json::from_slice(bytes)
        .map_err(|e| Error::ProviderProtocol(format!("chat completion body: {e}")))?;
    let text = body
        .choices
        .first()
        .and_then(|c| c.message.as_ref())
        .and_then(|m| m.content.clone())
        .ok_or_else(|| Error::ProviderProtocol("chat completion without a message".into()))?;
    Ok(Completion {
        text,
        usage: body.usage.map(|u| u.usage()).unwrap_or_default(),
        model: body.model.unwrap_or_default(),
    })
}

/// State of one chat completion chunk stream.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    usage: Usage,
    model: Option<String>,
}

impl StreamState {
    pub(super) fn usage(&self) -> Usage {
        self.usage
    }

    pub(super) fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    pub(super) fn on_event(&mut self, event: &SseEvent) -> Result<Option<Chunk>, Failure> {
        if event.data.trim() == "[DONE]" {
            return Ok(Some(Chunk::Finished));
        }
        let value: Value = serde_json::from_str(&event.data).map_err(|e| {
            Failure::permanent(Error::ProviderProtocol(format!(
                "chat completion chunk: {e}"
            )))
        })?;
        if value.get("error").is_some_and(|e| !e.is_null()) {
            let kind = value["error"]["type"]
                .as_str()
                .or(value["error"]["code"].as_str())
                .unwrap_or("server_error");
            return Err(stream_error(kind));
        }
        let chunk: CompletionBody = serde_json::from_value(value).map_err(|e| {
            Failure::permanent(Error::ProviderProtocol(format!(
                "chat completion chunk: {e}"
            )))
        })?;
        if let Some(model) = chunk.model {
            self.model = Some(model);
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage.usage();
        }
        Ok(chunk
            .choices
            .first()
            .and_then(|c| c.delta.as_ref())
            .and_then(|d| d.content.clone())
            .filter(|t| !t.is_empty())
            .map(Chunk::Delta))
    }
}
