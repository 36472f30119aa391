//! Anthropic Messages API wire format: request body, JSON answer, SSE events.

use serde::Deserialize;
use serde_json::{Value, json};

use super::sse::SseEvent;
use super::{Chunk, Completion, Failure, ModelRequest, Usage, stream_error};
use crate::error::Error;

/// The protocol version we speak.
pub(super) const VERSION: &str = "2023-06-01";

pub(super) fn body(model: &str, request: &ModelRequest, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "system": request.system,
        "messages": request.messages.iter().map(|m| json!({
            "role": m.role.as_str(),
            "content": m.content,
        })).collect::<Vec<_>>(),
    });
    if stream {
        body["stream"] = json!(true);
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

/// Usage as Anthropic reports it: `input_tokens` excludes the cache reads and writes, and a
/// stream reports fields in several events (later values replace earlier ones).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct RawUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl RawUsage {
    fn merge(&mut self, other: RawUsage) {
        self.input_tokens = other.input_tokens.or(self.input_tokens);
        self.output_tokens = other.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = other
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = other
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    fn usage(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0) + read + write,
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }
}

#[derive(Deserialize)]
struct MessageBody {
    model: Option<String>,
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    usage: RawUsage,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

pub(super) fn parse(bytes: &[u8]) -> Result<Completion, Error> {
    let body: MessageBody = serde_json::from_slice(bytes)
        .map_err(|e| Error::ProviderProtocol(format!("Anthropic message body: {e}")))?;
    let text = body
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .map(|b| b.text.as_str())
        .collect::<String>();
    Ok(Completion {
        text,
        usage: body.usage.usage(),
        model: body.model.unwrap_or_default(),
    })
}

/// State of one Anthropic event stream.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    usage: RawUsage,
    model: Option<String>,
}

impl StreamState {
    pub(super) fn usage(&self) -> Usage {
        self.usage.usage()
    }

    pub(super) fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    pub(super) fn on_event(&mut self, event: &SseEvent) -> Result<Option<Chunk>, Failure> {
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            Failure::permanent(Error::ProviderProtocol(format!("Anthropic event: {e}")))
        })?;
        let kind = data["type"]
            .as_str()
            .or(event.event.as_deref())
            .unwrap_or("");
        let usage = |v: &Value| serde_json::from_value::<RawUsage>(v.clone()).unwrap_or_default();
        match kind {
            "message_start" => {
                self.model = data["message"]["model"].as_str().map(str::to_string);
                self.usage.merge(usage(&data["message"]["usage"]));
                Ok(None)
            }
            "content_block_start" => Ok(data["content_block"]["text"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(|t| Chunk::Delta(t.to_string()))),
            "content_block_delta" => Ok(data["delta"]["text"]
                .as_str()
                .filter(|t| !t.is_empty() && data["delta"]["type"] == "text_delta")
                .map(|t| Chunk::Delta(t.to_string()))),
            "message_delta" => {
                self.usage.merge(usage(&data["usage"]));
                Ok(None)
            }
            "message_stop" => Ok(Some(Chunk::Finished)),
            "error" => Err(stream_error(
                data["error"]["type"].as_str().unwrap_or("error"),
            )),
            // ping, content_block_stop and event types added after this was written.
            _ => Ok(None),
        }
    }
}
