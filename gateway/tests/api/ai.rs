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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_answers_through_the_gateway() {
    let stack = AiStack::start(anthropic).await;
    let user = unique_user("ai_ops");
    let tokens = ANTHROPIC_INPUT + ANTHROPIC_OUTPUT;

    let response = stack
        .post("/api/ai/generate", &user, generate_body("a greeting"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-cache"), "miss");
    let server_timing = header(&response, "server-timing").to_string();
    let provider = timing(&server_timing, "provider").expect("provider time");
    let own = timing(&server_timing, "gateway").expect("own time");
    let total = timing(&server_timing, "total").expect("total time");
    assert!(
        (provider + own - total).abs() < 0.01,
        "provider + gateway = total: {server_timing}"
    );
    let generated: Value = response.json().await.unwrap();
    assert_eq!(
        generated["code"],
        "def greet(name):\n    return f\"Hello, {name}!\"\n\nprint(greet(\"world\"))"
    );
    assert_eq!(generated["language"], "python");
    assert!(
        generated["explanation"]
            .as_str()
            .unwrap()
            .starts_with("Here is the program.")
    );
    assert_eq!(generated["tokensUsed"], tokens);
    assert_eq!(generated["inputTokens"], ANTHROPIC_INPUT);
    assert_eq!(generated["outputTokens"], ANTHROPIC_OUTPUT);
    assert_eq!(generated["model"], ANTHROPIC_MODEL);
    assert_eq!(generated["cached"], false);

    let explained = stack
        .ok(
            "/api/ai/explain",
            &user,
            json!({"code": "print(1)", "language": "py"}),
        )
        .await;
    assert!(explained["explanation"].as_str().unwrap().contains("greet"));
    assert_eq!(explained["language"], "python");
    assert_eq!(explained["tokensUsed"], tokens);

    let fixed = stack
        .ok(
            "/api/ai/fix",
            &user,
            json!({"code": "def greet(name) return name", "error": "SyntaxError", "language": "python"}),
        )
        .await;
    assert!(
        fixed["code"]
            .as_str()
            .unwrap()
            .starts_with("def greet(name):")
    );
    assert!(!fixed["explanation"].as_str().unwrap().is_empty());
    assert_eq!(fixed["inputTokens"], ANTHROPIC_INPUT);

    let refactored = stack
        .ok(
            "/api/ai/refactor",
            &user,
            json!({"code": "def g(n): return 'Hello ' + n", "language": "python", "goals": "clear names"}),
        )
        .await;
    assert!(refactored["code"].as_str().unwrap().contains("def greet"));
    assert_eq!(refactored["outputTokens"], ANTHROPIC_OUTPUT);

    stack.fake.set_text("return a + b");
    let completed = stack
        .ok(
            "/api/ai/complete",
            &user,
            json!({"prefix": "def add(a, b):\n    ", "suffix": "\n", "language": "python"}),
        )
        .await;
    assert_eq!(completed["completion"], "return a + b");
    assert_eq!(completed["cached"], false);

    stack.fake.set_text("It prints a greeting.");
    let chatted = stack
        .ok(
            "/api/ai/chat",
            &user,
            json!({"messages": [
                {"role": "user", "content": "What does greet do?"},
                {"role": "assistant", "content": "Which greet?"},
                {"role": "user", "content": "The Python one."}
            ], "projectId": "p-1"}),
        )
        .await;
    assert_eq!(chatted["message"], "It prints a greeting.");
    assert_eq!(chatted["tokensUsed"], tokens);
    assert_eq!(stack.fake.calls(), 6, "one provider call per operation");
    let last = &stack.fake.seen()[5].body;
    assert_eq!(last["messages"].as_array().unwrap().len(), 3);

    // Every AI route is in the OpenAPI document.
    let doc: Value = stack
        .gateway
        .http
        .get(stack.gateway.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "generate", "explain", "fix", "refactor", "complete", "chat", "usage",
    ] {
        assert!(
            doc["paths"][format!("/api/ai/{path}")].is_object(),
            "{path} documented"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_streams_several_events_before_the_final_one_with_usage() {
    let stack = AiStack::start(anthropic).await;
    let user = unique_user("ai_stream");
    let response = open_stream(
        &stack,
        "/api/ai/generate",
        &user,
        generate_body("a greeting"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert!(timing(header(&response, "server-timing"), "provider").is_some());
    let chunks = read_chunks(response).await;
    // The events were forwarded as they came, not gathered: the first delta arrived in a chunk
    // of its own, well before the final event.
    assert!(chunks.len() >= 3, "several chunks: {chunks:?}");
    assert!(chunks[0].contains("event: delta") && !chunks[0].contains("event: done"));

    let events = parse_events(&chunks.concat());
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e.name == "delta")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert!(deltas.len() >= 3, "several deltas: {events:?}");
    assert_eq!(deltas.concat(), DEFAULT_TEXT);
    let done = events.last().unwrap();
    assert_eq!(done.name, "done", "{events:?}");
    assert!(
        done.data["code"]
            .as_str()
            .unwrap()
            .starts_with("def greet(name):")
    );
    assert_eq!(done.data["tokensUsed"], ANTHROPIC_INPUT + ANTHROPIC_OUTPUT);
    assert_eq!(done.data["inputTokens"], ANTHROPIC_INPUT);
    assert_eq!(done.data["model"], ANTHROPIC_MODEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_on_openai_and_a_failure_mid_way_ends_with_an_error_event() {
    let stack = AiStack::start(openai).await;
    let user = unique_user("ai_chat_stream");
    stack
        .fake
        .set_text("Hello there, how can I help you today?");
    let chat = json!({"messages": [{"role": "user", "content": "Say hello"}]});
    let response = open_stream(&stack, "/api/ai/chat", &user, chat.clone()).await;
    assert_eq!(response.status(), 200);
    let events = parse_events(&read_chunks(response).await.concat());
    assert!(events.iter().filter(|e| e.name == "delta").count() >= 3);
    let done = events.last().unwrap();
    assert_eq!(done.name, "done");
    assert_eq!(
        done.data["message"],
        "Hello there, how can I help you today?"
    );
    assert_eq!(done.data["tokensUsed"], OPENAI_INPUT + OPENAI_OUTPUT);

    stack.fake.script([Reply::StreamErrorAfter { tokens: 2 }]);
    let response = open_stream(&stack, "/api/ai/chat", &user, chat).await;
    assert_eq!(
        response.status(),
        200,
        "the failure came after the first token"
    );
    let events = parse_events(&read_chunks(response).await.concat());
    assert_eq!(
        events.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["delta", "delta", "error"]
    );
    let error = &events[2].data;
    assert_eq!(error["kind"], "overloaded");
    assert!(!error["partialText"].as_str().unwrap().is_empty());
    assert!(!error["message"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_provider_failure_succeeds_and_exhausted_retries_are_503_with_retry_after() {
    let stack = AiStack::start(anthropic).await;
    let user = unique_user("ai_retry");
    let overloaded = || Reply::Error {
        status: 529,
        error_type: "overloaded_error",
        headers: vec![("retry-after-ms", "10".to_string())],
    };

    stack.fake.script([overloaded()]);
    let response = stack
        .post("/api/ai/generate", &user, generate_body("retry once"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(stack.fake.calls(), 2, "one failure, one retry");

    stack.fake.script([
        Reply::DropConnection,
        Reply::Error {
            status: 503,
            error_type: "api_error",
            headers: vec![],
        },
        Reply::Error {
            status: 429,
            error_type: "rate_limit_error",
            headers: vec![("retry-after", "7".to_string())],
        },
    ]);
    let response = stack
        .post("/api/ai/generate", &user, generate_body("retry in vain"))
        .await;
    assert_eq!(stack.fake.calls(), 5, "the first attempt and two retries");
    assert_eq!(header(&response, "retry-after"), "7", "the provider's hint");
    let problem = assert_problem(response, 503).await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("ai-provider-unavailable")
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("provider"),
        "{problem}"
    );

    // A stream that cannot get its first token fails the same way, as a problem, not a stream.
    stack.fake.script([
        Reply::StreamErrorFirst,
        Reply::StreamErrorFirst,
        Reply::StreamErrorFirst,
    ]);
    let response = open_stream(
        &stack,
        "/api/ai/generate",
        &user,
        generate_body("stream in vain"),
    )
    .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_too_slow_is_504() {
    let stack = AiStack::start_with(
        anthropic,
        |ai| {
            let provider = ai.provider.as_mut().unwrap();
            provider.timeouts.total = Duration::from_millis(300);
            provider.retry.max_retries = 0;
        },
        |_| {},
    )
    .await;
    stack
        .fake
        .script([Reply::Slow(Duration::from_secs(2), Box::new(Reply::Answer))]);
    let response = stack
        .post(
            "/api/ai/complete",
            &unique_user("ai_slow"),
            json!({"prefix": "x = ", "language": "python"}),
        )
        .await;
    let problem = assert_problem(response, 504).await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("ai-provider-timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_provider_credentials_are_502_without_the_key() {
    const WRONG: &str = "sk-wrong-9876543210-LEAKME";
    fn wrong_key(fake: &FakeProvider) -> Option<ProviderConfig> {
        Some(fast(ProviderConfig::anthropic(fake.url(), WRONG)))
    }
    let stack = AiStack::start(wrong_key).await;
    let user = unique_user("ai_creds");
    for stream in [false, true] {
        let mut request = stack
            .gateway
            .post("/api/ai/generate", &user)
            .json(&generate_body("anything"));
        if stream {
            request = request.header("accept", "text/event-stream");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 502);
        let text = response.text().await.unwrap();
        // The fake echoes the key it was given in its 401 body, as OpenAI does.
        assert!(!text.contains("LEAKME") && !text.contains("sk-"), "{text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("ai-provider-credentials")
        );
        assert!(problem["detail"].as_str().unwrap().contains("API key"));
    }
    assert_eq!(stack.fake.calls(), 2, "a 401 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_totals_follow_a_mix_of_calls_and_the_second_identical_request_is_cached() {
    let stack = AiStack::start(anthropic).await;
    let user = unique_user("ai_usage");
    let tokens = ANTHROPIC_INPUT + ANTHROPIC_OUTPUT;

    let first = stack
        .ok("/api/ai/generate", &user, generate_body("cache me"))
        .await;
    assert_eq!(first["cached"], false);
    let response = stack
        .post("/api/ai/generate", &user, generate_body("cache me"))
        .await;
    assert_eq!(header(&response, "x-cache"), "hit");
    let server_timing = header(&response, "server-timing").to_string();
    assert!(
        timing(&server_timing, "provider").is_none(),
        "no provider time on a hit: {server_timing}"
    );
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["cached"], true);
    assert_eq!(second["tokensUsed"], 0);
    assert_eq!(second["code"], first["code"]);
    assert_eq!(stack.fake.calls(), 1, "the provider saw one call");

    stack
        .ok(
            "/api/ai/explain",
            &user,
            json!({"code": "x = 1", "language": "python"}),
        )
        .await;
    stack
        .ok(
            "/api/ai/chat",
            &user,
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let response = open_stream(
        &stack,
        "/api/ai/chat",
        &user,
        json!({"messages": [{"role": "user", "content": "hi again"}]}),
    )
    .await;
    read_chunks(response).await;

    let usage = stack.usage(&user).await;
    for period in ["day", "month"] {
        let p = &usage[period];
        assert_eq!(p["requests"], 5, "{usage}");
        assert_eq!(p["cachedRequests"], 1);
        assert_eq!(p["tokensUsed"], 4 * tokens);
        assert_eq!(p["inputTokens"], 4 * ANTHROPIC_INPUT);
        let by: Vec<(String, u64, u64)> = p["byOperation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["operation"].as_str().unwrap().to_string(),
                    o["requests"].as_u64().unwrap(),
                    o["tokensUsed"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by,
            [
                ("chat".to_string(), 2, 2 * tokens),
                ("explain".to_string(), 1, tokens),
                ("generate".to_string(), 2, tokens),
            ]
        );
    }
    assert!(
        usage["month"]["start"]
            .as_str()
            .unwrap()
            .ends_with("01T00:00:00Z")
    );
    assert!(usage.get("monthlyTokenBudget").is_none());
    // Another user's usage is their own.
    assert_eq!(
        stack.usage(&unique_user("ai_other")).await["day"]["requests"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_monthly_budget_is_429_with_a_clear_message() {
    let stack =
        AiStack::start_with(anthropic, |ai| ai.monthly_token_budget = Some(30), |_| {}).await;
    let user = unique_user("ai_budget");
    // 23 tokens: under the budget when it starts, so it is served.
    stack
        .ok("/api/ai/generate", &user, generate_body("first"))
        .await;
    stack
        .ok("/api/ai/generate", &user, generate_body("second"))
        .await;
    let response = stack
        .post("/api/ai/generate", &user, generate_body("third"))
        .await;
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert!(retry_after >= 1);
    let problem = assert_problem(response, 429).await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("ai-budget-exhausted")
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("budget") && detail.contains("of 30 tokens"),
        "{detail}"
    );
    assert_eq!(
        stack.fake.calls(),
        2,
        "the refused call never reached the provider"
    );

    let usage = stack.usage(&user).await;
    assert_eq!(usage["monthlyTokenBudget"], 30);
    assert_eq!(usage["monthlyTokensRemaining"], 0);
    // Others still have their budget.
    stack
        .ok(
            "/api/ai/generate",
            &unique_user("ai_budget2"),
            generate_body("third"),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_the_provider_request() {
    let stack = AiStack::start(anthropic).await;
    let user = unique_user("ai_cancel");
    stack.fake.script([Reply::StreamHang { tokens: 1 }]);
    let mut response = open_stream(&stack, "/api/ai/generate", &user, generate_body("hang")).await;
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        let chunk = response.chunk().await.unwrap().expect("a delta first");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        !stack.fake.wait_for_hangup(Duration::from_millis(300)).await,
        "the provider call is still open while the client listens"
    );
    let dropped = Instant::now();
    drop(response);
    assert!(
        stack.fake.wait_for_hangup(Duration::from_secs(15)).await,
        "the provider saw its connection close"
    );
    eprintln!("provider hung up {:?} after the client", dropped.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_21st_ai_call_in_the_window_is_refused() {
    let stack =
        AiStack::start_with(anthropic, |_| {}, |gw| gw.limits = LimitsConfig::default()).await;
    let user = unique_user("ai_limit");
    for i in 0..20 {
        let response = if i % 2 == 0 {
            stack
                .gateway
                .get("/api/ai/usage", &user)
                .send()
                .await
                .unwrap()
        } else {
            stack
                .post(
                    "/api/ai/complete",
                    &user,
                    json!({"prefix": "x = ", "language": "python"}),
                )
                .await
        };
        assert_eq!(response.status(), 200, "call {}", i + 1);
        assert_eq!(header(&response, "ratelimit-limit"), "20");
    }
    let refused = stack
        .gateway
        .get("/api/ai/usage", &user)
        .send()
        .await
        .unwrap();
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!(
        (1..=900).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let problem = assert_problem(refused, 429).await;
    assert!(problem["detail"].as_str().unwrap().contains("ai"));
    // The AI group's budget is its own: other groups still answer.
    let other = stack
        .gateway
        .get("/api/projects", &user)
        .send()
        .await
        .unwrap();
    assert_ne!(other.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_provider_ai_calls_are_503_naming_the_variables() {
    let stack = AiStack::start(|_| None).await;
    let user = unique_user("ai_none");
    for stream in [false, true] {
        let mut request = stack
            .gateway
            .post("/api/ai/generate", &user)
            .json(&generate_body("anything"));
        if stream {
            request = request.header("accept", "text/event-stream");
        }
        let response = request.send().await.unwrap();
        assert!(response.headers().contains_key("server-timing"));
        let problem = assert_problem(response, 503).await;
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("ai-not-configured")
        );
        let detail = problem["detail"].as_str().unwrap();
        for variable in [
            "AI_PROVIDER",
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
        ] {
            assert!(detail.contains(variable), "{variable} in {detail}");
        }
    }
    // Usage still answers.
    assert_eq!(stack.usage(&user).await["day"]["requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_with_per_field_errors() {
    let stack = AiStack::start(anthropic).await;
    let user = unique_user("ai_input");
    let fields = |problem: &Value| -> Vec<String> {
        problem["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["field"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };

    let cases = [
        (
            "/api/ai/generate",
            json!({"prompt": "", "language": "cobol"}),
            vec!["prompt", "language"],
        ),
        (
            "/api/ai/generate",
            json!({"language": "python"}),
            vec!["prompt"],
        ),
        (
            "/api/ai/generate",
            json!({"prompt": "x".repeat(10_001), "language": "python"}),
            vec!["prompt"],
        ),
        (
            "/api/ai/explain",
            json!({"code": "", "language": "python"}),
            vec!["code"],
        ),
        (
            "/api/ai/fix",
            json!({"code": "x", "language": "python"}),
            vec!["error"],
        ),
        (
            "/api/ai/complete",
            json!({"prefix": "", "language": "python"}),
            vec!["prefix"],
        ),
        ("/api/ai/chat", json!({"messages": []}), vec!["messages"]),
        (
            "/api/ai/chat",
            json!({"messages": [{"role": "robot", "content": "hi"}]}),
            vec!["messages[0].role"],
        ),
    ];
    for (path, body, expected) in cases {
        let response = stack.post(path, &user, body.clone()).await;
        let problem = assert_problem(response, 400).await;
        let got = fields(&problem);
        for field in &expected {
            assert!(
                got.iter().any(|f| f == field),
                "{path} {body}: {field} in {got:?}"
            );
        }
    }
    // Shape errors are 400 too, with the offending field named.
    let response = stack
        .post(
            "/api/ai/generate",
            &user,
            json!({"prompt": 42, "language": "python"}),
        )
        .await;
    assert_problem(response, 400).await;
    let response = stack
        .post(
            "/api/ai/generate",
            &user,
            json!({"prompt": "x", "language": "python", "temperature": 2}),
        )
        .await;
    let problem = assert_problem(response, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("temperature"));
    assert_eq!(
        stack.fake.calls(),
        0,
        "nothing invalid reached the provider"
    );
}
