//! `/api/ai` end to end: HTTP to the real gateway, gRPC to the real ai-service, HTTP from there to
//! a fake AI provider speaking the Anthropic and OpenAI wire formats.

pub use fake_providers::ai as fake_provider;

use std::time::{Duration, Instant};

use ai_service::{ProviderConfig, RetryPolicy, Timeouts};
use gateway::config::{Config, LimitsConfig};
use serde_json::{Value, json};
use service_runtime::testing::{TempDir, fresh_sqlite_url};

use crate::helpers::*;
use fake_provider::*;

mod operations;
mod usage;

/// A fake provider, ai-service on SQLite in front of it, and a gateway in front of that.
pub(crate) struct AiStack {
    pub(crate) fake: FakeProvider,
    pub(crate) gateway: Gateway,
    _ai: Server,
    _data: TempDir,
}

/// Retries and timeouts short enough for tests, long enough to be stable on a busy machine.
fn fast(mut provider: ProviderConfig) -> ProviderConfig {
    provider.retry = RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(10),
    };
    provider.timeouts = Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_secs(2),
        total: Duration::from_secs(10),
    };
    provider
}

pub(crate) fn anthropic(fake: &FakeProvider) -> Option<ProviderConfig> {
    Some(fast(ProviderConfig::anthropic(fake.url(), KEY)))
}

fn openai(fake: &FakeProvider) -> Option<ProviderConfig> {
    Some(fast(ProviderConfig::openai(
        format!("{}/v1", fake.url()),
        Some(KEY.to_string()),
    )))
}

impl AiStack {
    async fn start(provider: fn(&FakeProvider) -> Option<ProviderConfig>) -> Self {
        Self::start_with(provider, |_| {}, |_| {}).await
    }

    pub(crate) async fn start_with(
        provider: fn(&FakeProvider) -> Option<ProviderConfig>,
        adjust_ai: impl FnOnce(&mut ai_service::Config),
        adjust_gateway: impl FnOnce(&mut Config),
    ) -> Self {
        let fake = FakeProvider::start().await;
        let (database_url, data) = fresh_sqlite_url();
        let mut ai_config = ai_service::Config::new(database_url);
        ai_config.caller_keys = Some(service_runtime::testing::caller_keys());
        ai_config.provider = provider(&fake);
        adjust_ai(&mut ai_config);
        let ai = start_ai_service(ai_config);
        let mut config = gateway_config("http://127.0.0.1:1");
        config.services.ai = format!("http://{}", ai.addr);
        config.limits = generous_limits();
        adjust_gateway(&mut config);
        let gateway = Gateway::start(config).await;
        Self {
            fake,
            gateway,
            _ai: ai,
            _data: data,
        }
    }

    async fn post(&self, path: &str, user: &str, body: Value) -> reqwest::Response {
        self.gateway
            .post(path, user)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs and expects 200 with a JSON body.
    async fn ok(&self, path: &str, user: &str, body: Value) -> Value {
        let response = self.post(path, user, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn usage(&self, user: &str) -> Value {
        let response = self
            .gateway
            .get("/api/ai/usage", user)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

pub(crate) fn generate_body(prompt: &str) -> Value {
    json!({"prompt": prompt, "language": "python"})
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .unwrap()
}

/// The `dur` of one `Server-Timing` metric.
fn timing(value: &str, metric: &str) -> Option<f64> {
    value.split(',').find_map(|m| {
        let mut parts = m.trim().split(';');
        (parts.next()? == metric).then_some(())?;
        parts.find_map(|p| p.strip_prefix("dur=")?.parse().ok())
    })
}

/// One server-sent event: its name and its JSON data.
#[derive(Debug)]
struct Event {
    name: String,
    data: Value,
}

fn parse_events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).unwrap());
                }
            }
            Some(Event {
                name: name?,
                data: data?,
            })
        })
        .collect()
}

/// Reads a stream to its end, keeping each chunk as the network delivered it.
async fn read_chunks(mut response: reqwest::Response) -> Vec<String> {
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks.push(String::from_utf8(chunk.to_vec()).unwrap());
    }
    chunks
}

async fn open_stream(stack: &AiStack, path: &str, user: &str, body: Value) -> reqwest::Response {
    stack
        .gateway
        .post(path, user)
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap()
}
