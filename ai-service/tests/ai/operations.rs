//! Each operation, end to end, on both wire protocols; validation; identity; no provider.

use autocrea_proto::ai::v1 as pb;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fake_provider::*;
use crate::helpers::*;

fn generate_in(prompt: &str, language: &str) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        language: language.into(),
        framework: None,
    }
}

#[tokio::test]
async fn generate_on_anthropic_returns_the_python_block_without_fences_and_usage() {
    let fake = FakeProvider::start().await;
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let mut request = generate_in("a greeting function", "py");
    request.framework = Some("stdlib".into());
    let response = app.client.generate(req(request)).await.expect("generate");
    let timing = meta(response.metadata(), "x-provider-ms").expect("x-provider-ms");
    assert!(timing.parse::<u64>().is_ok(), "{timing}");
    assert_eq!(meta(response.metadata(), "x-cache"), Some("miss"));
    let r = response.into_inner();
    assert_eq!(
        r.code,
        "def greet(name):\n    return f\"Hello, {name}!\"\n\nprint(greet(\"world\"))"
    );
    assert!(
        r.explanation.starts_with("Here is the program."),
        "{}",
        r.explanation
    );
    assert!(!r.explanation.contains("```"));
    assert_eq!(r.language, "python");
    assert_eq!(r.usage.as_ref().unwrap().model, ANTHROPIC_MODEL);
    assert_eq!(
        (
            r.usage.as_ref().unwrap().input_tokens,
            r.usage.as_ref().unwrap().output_tokens
        ),
        (ANTHROPIC_INPUT, ANTHROPIC_OUTPUT)
    );
    assert_eq!(
        r.usage.as_ref().unwrap().tokens_used,
        ANTHROPIC_INPUT + ANTHROPIC_OUTPUT
    );
    assert!(!r.usage.as_ref().unwrap().cached);

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let body = &seen[0].body;
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(body["max_tokens"], json!(4096));
    assert!(
        body["system"]
            .as_str()
            .unwrap()
            .contains("fenced code block")
    );
    assert_eq!(body["messages"][0]["role"], "user");
    let content = body["messages"][0]["content"].as_str().unwrap();
    assert!(content.contains("a greeting function") && content.contains("using stdlib"));
    assert!(body.get("stream").is_none());
}

#[tokio::test]
async fn generate_on_openai_compatible_sends_bearer_and_system_message() {
    let fake = FakeProvider::start().await;
    let mut app = spawn_with(Some(openai(&fake))).await;
    let r = app
        .client
        .generate(req(generate_in("a greeting function", "python")))
        .await
        .expect("generate")
        .into_inner();
    assert!(r.code.starts_with("def greet(name):"), "{}", r.code);
    assert_eq!(r.usage.as_ref().unwrap().model, OPENAI_MODEL);
    assert_eq!(
        (
            r.usage.as_ref().unwrap().input_tokens,
            r.usage.as_ref().unwrap().output_tokens
        ),
        (OPENAI_INPUT, OPENAI_OUTPUT)
    );
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(seen[0].body["messages"][0]["role"], "system");
    assert_eq!(seen[0].body["messages"][1]["role"], "user");
}

#[tokio::test]
async fn explain_returns_the_models_text() {
    let fake = FakeProvider::start().await;
    fake.set_text("  It adds two numbers and returns the sum.\n");
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let r = app
        .client
        .explain(req(pb::ExplainRequest {
            code: "def add(a, b):\n    return a + b".into(),
            language: "python".into(),
        }))
        .await
        .expect("explain")
        .into_inner();
    assert_eq!(r.explanation, "It adds two numbers and returns the sum.");
    assert_eq!(
        r.usage.as_ref().unwrap().tokens_used,
        ANTHROPIC_INPUT + ANTHROPIC_OUTPUT
    );
    let body = &fake.seen()[0].body;
    assert_eq!(body["max_tokens"], json!(2048));
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("```python\ndef add")
    );
}

#[tokio::test]
async fn fix_returns_fixed_code_and_what_was_wrong() {
    let fake = FakeProvider::start().await;
    fake.set_text(
        "The function used `=` instead of `==` in the comparison.\n\n```js\nfunction isZero(x) {\n  return x === 0;\n}\n```",
    );
    let mut app = spawn_with(Some(openai(&fake))).await;
    let r = app
        .client
        .fix(req(pb::FixRequest {
            code: "function isZero(x) {\r\n  return x = 0;\r\n}".into(),
            error: "always true".into(),
            language: "JavaScript".into(),
        }))
        .await
        .expect("fix")
        .into_inner();
    assert_eq!(r.code, "function isZero(x) {\n  return x === 0;\n}");
    assert_eq!(
        r.explanation,
        "The function used `=` instead of `==` in the comparison."
    );
    assert_eq!(r.language, "javascript");
    let content = fake.seen()[0].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        content.contains("always true") && !content.contains('\r'),
        "{content}"
    );
}

#[tokio::test]
async fn refactor_passes_goals_and_returns_code() {
    let fake = FakeProvider::start().await;
    fake.set_text("```rust\nfn double(x: i32) -> i32 {\n    x * 2\n}\n```\n- named the function");
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let r = app
        .client
        .refactor(req(pb::RefactorRequest {
            code: "fn f(x:i32)->i32{x+x}".into(),
            language: "rust".into(),
            goals: Some("clear names".into()),
        }))
        .await
        .expect("refactor")
        .into_inner();
    assert_eq!(r.code, "fn double(x: i32) -> i32 {\n    x * 2\n}");
    assert_eq!(r.explanation, "- named the function");
    let content = fake.seen()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.contains("Goals: clear names"), "{content}");
}

#[tokio::test]
async fn complete_is_short_and_keeps_whitespace() {
    let fake = FakeProvider::start().await;
    fake.set_text("    return a + b\n");
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let r = app
        .client
        .complete(req(pb::CompleteRequest {
            prefix: "def add(a, b):\n".into(),
            suffix: Some("\n\nprint(add(1, 2))".into()),
            language: "python".into(),
        }))
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(r.completion, "    return a + b\n");
    let body = &fake.seen()[0].body;
    assert_eq!(body["max_tokens"], json!(256));
    let content = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        content.contains("def add(a, b):\n<CURSOR>\n\nprint(add(1, 2))"),
        "{content}"
    );
}

#[tokio::test]
async fn chat_sends_the_whole_conversation() {
    let fake = FakeProvider::start().await;
    fake.set_text("Use a `HashMap`.");
    let mut app = spawn_with(Some(openai(&fake))).await;
    let message = |role: &str, content: &str| pb::ChatMessage {
        role: role.into(),
        content: content.into(),
    };
    let r = app
        .client
        .chat(req(pb::ChatRequest {
            messages: vec![
                message("user", "How do I count words in Rust?"),
                message("assistant", "Split on whitespace."),
                message("user", "And store the counts?"),
            ],
            project_id: Some("proj_1".into()),
        }))
        .await
        .expect("chat")
        .into_inner();
    assert_eq!(r.message, "Use a `HashMap`.");
    assert_eq!(
        r.usage.as_ref().unwrap().tokens_used,
        OPENAI_INPUT + OPENAI_OUTPUT
    );
    let messages = fake.seen()[0].body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[3]["content"], "And store the counts?");
}

#[tokio::test]
async fn invalid_input_lists_every_field_to_fix_without_calling_the_provider() {
    let fake = FakeProvider::start().await;
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let status = app
        .client
        .generate(req(generate_in(&"x".repeat(10_001), "cobol")))
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let violations = &details
        .bad_request()
        .expect("BadRequest details")
        .field_violations;
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["prompt", "language"]);
    assert!(violations[0].description.contains("limit is 10000"));
    assert!(
        violations[1].description.contains("python"),
        "lists supported languages"
    );

    let status = app
        .client
        .chat(req(pb::ChatRequest {
            messages: vec![pb::ChatMessage {
                role: "assistant".into(),
                content: "hi".into(),
            }],
            project_id: None,
        }))
        .await
        .expect_err("invalid chat");
    let details = status.get_error_details();
    let v = &details.bad_request().unwrap().field_violations[0];
    assert_eq!(v.field, "messages[0].role");
    assert!(
        v.description
            .contains("last message must come from the user")
    );
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn calls_without_a_valid_assertion_are_refused_before_the_provider_and_health_stays_open() {
    let fake = FakeProvider::start().await;
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let status = app
        .client
        .generate(tonic::Request::new(generate_in("x", "python")))
        .await
        .expect_err("no identity");
    assert_eq!(status.code(), Code::Unauthenticated);
    for (what, request) in service_runtime::testing::forged_requests(
        service_runtime::identity::audience::AI,
        USER,
        generate_in("x", "python"),
    ) {
        let status = app.client.generate(request).await.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    for (what, request) in service_runtime::testing::forged_requests(
        service_runtime::identity::audience::AI,
        USER,
        pb::GetUsageRequest {},
    ) {
        let status = app.client.get_usage(request).await.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    assert_eq!(fake.calls(), 0, "a refused call never reaches the provider");
    service_runtime::testing::assert_health_open(&format!("http://{}", app.addr)).await;
    // The gateway's call goes through.
    app.client
        .generate(req(generate_in("x", "python")))
        .await
        .expect("a signed call is answered");
}

#[tokio::test]
async fn without_a_provider_the_service_runs_and_names_the_variables_to_set() {
    let mut app = spawn_with(None).await;
    let status = app
        .client
        .generate(req(generate_in("a greeting", "python")))
        .await
        .expect_err("not configured");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("ANTHROPIC_API_KEY"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("OPENAI_BASE_URL"));
    assert_eq!(
        meta(status.metadata(), "x-ai-error"),
        Some("not-configured")
    );
    let status = app
        .client
        .chat_stream(req(chat("hi")))
        .await
        .expect_err("not configured");
    assert_eq!(status.code(), Code::FailedPrecondition);
    // Usage still answers: the ledger does not need a provider.
    let usage = app.usage(USER).await;
    assert_eq!(usage.month.unwrap().requests, 0);
}
