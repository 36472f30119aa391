//! Each AI operation through the gateway, streamed and not, and the provider's failures.

use super::*;

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
