//! Usage, the monthly budget, cancellation, the AI rate limit, no provider, bad input.

use super::*;

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
    // The most a generate of a five-letter prompt may cost, as ai-service holds it.
    let most = ai_service::task::Task::generate(
        &autocrea_proto::ai::v1::GenerateRequest {
            prompt: "first".into(),
            language: "python".into(),
            framework: None,
        },
        &ai_service::Limits::default(),
    )
    .unwrap()
    .model_request()
    .max_billable_tokens();
    // Room for two calls and a half, each billed the most it may cost.
    let budget = 2 * most + most / 2;
    let stack = AiStack::start_with(
        anthropic,
        |ai| ai.monthly_token_budget = Some(budget),
        |_| {},
    )
    .await;
    stack.fake.set_usage(most - 4096, 4096);
    let user = unique_user("ai_budget");
    stack
        .ok("/api/ai/generate", &user, generate_body("first"))
        .await;
    stack
        .ok("/api/ai/generate", &user, generate_body("other"))
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
        detail.contains("budget") && detail.contains(&format!("{} of {budget} tokens", 2 * most)),
        "{detail}"
    );
    assert_eq!(
        stack.fake.calls(),
        2,
        "the refused call never reached the provider"
    );

    let usage = stack.usage(&user).await;
    assert_eq!(usage["monthlyTokenBudget"], budget);
    assert_eq!(usage["monthlyTokensRemaining"], budget - 2 * most);
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
