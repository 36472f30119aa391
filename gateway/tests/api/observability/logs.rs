//! The request log: JSON lines without tokens or prompts.

use super::*;

/// Every log line of `dir`'s files whose name starts with `prefix`, parsed as JSON.
fn log_lines(dir: &std::path::Path, prefix: &str) -> (Vec<Value>, String) {
    let mut lines = Vec::new();
    let mut raw = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for line in text.lines() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            lines.push(value);
        }
        raw.push_str(&text);
    }
    (lines, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_lines_are_json_without_tokens_or_prompts() {
    let logs = TempDir::new();
    let mut settings = settings();
    settings.log_dir = Some(logs.path.clone());
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();

    let fake = FakeProvider::start().await;
    let (database_url, _data) = fresh_sqlite_url();
    let mut ai_config = ai_service::Config::new(database_url);
    ai_config.caller_keys = Some(service_runtime::testing::caller_keys());
    ai_config.provider = Some(ai_service::ProviderConfig::anthropic(fake.url(), KEY));
    let ai = start_ai_service(ai_config);
    let project = ProjectService::start(Db::Sqlite).await;
    let mut config = gateway_config(&project.url());
    config.services.ai = format!("http://{}", ai.addr);
    config.limits = generous_limits();
    let gateway = Gateway::start(config).await;

    let user = unique_user("logs");
    let token = token(&user);
    let prompt = format!("PROMPT-MARKER-{}", uuid::Uuid::new_v4().simple());
    let response = gateway
        .http
        .post(gateway.url("/api/ai/generate"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"prompt": prompt, "language": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ai_request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let ai_bytes = response.bytes().await.unwrap().len();
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.body.to_string().contains(&prompt)),
        "the prompt reached the provider"
    );
    // A 4xx (unknown project) and a 5xx (sandbox-service is down).
    let missing = gateway
        .get("/api/projects/00000000-0000-0000-0000-000000000000", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let down = gateway
        .get("/api/sandbox/languages", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    let down_id = down.headers()["x-request-id"].to_str().unwrap().to_string();

    // ai-service runs in this process: its metrics are on the same registry.
    let metrics = super::metrics::scrape(&gateway).await;
    let tokens = format!(
        r#"ai_tokens_total{{operation="generate",model="{ANTHROPIC_MODEL}",direction="input"}}"#
    );
    assert_eq!(metrics[&tokens], ANTHROPIC_INPUT as f64);
    assert_eq!(
        metrics[r#"ai_provider_duration_seconds_count{provider="anthropic",outcome="ok"}"#],
        1.0
    );
    assert_eq!(
        metrics[r#"ai_calls_total{operation="generate",outcome="ok",cached="false"}"#],
        1.0
    );

    drop(gateway);
    drop(project);
    drop(ai);
    // Dropping the guard flushes the files.
    drop(telemetry);

    let (lines, raw) = log_lines(&logs.path, "gateway-tests.");
    assert!(!raw.contains(&token), "the bearer token was logged");
    assert!(!raw.contains(&prompt), "the prompt was logged");
    assert!(!raw.contains(KEY), "the provider key was logged");

    let request_line = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id && l.get("status").is_some())
            .unwrap_or_else(|| panic!("no request line for {id} in {lines:#?}"))
            .clone()
    };
    let line = request_line(&ai_request_id);
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/api/ai/generate");
    assert_eq!(line["status"], 200);
    assert_eq!(line["user_id"], user.as_str());
    assert_eq!(line["bytes"], ai_bytes as u64);
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(line["timestamp"].is_string());

    let line = lines
        .iter()
        .find(|l| l["status"] == 404)
        .expect("a line for the 404");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["route"], "/api/projects/{id}");

    let line = request_line(&down_id);
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["status"], 503);
    assert!(
        line["error"].as_str().unwrap().contains("sandbox-service"),
        "{line}"
    );

    // The errors-only file has that line and nothing below ERROR.
    let (errors, _) = log_lines(&logs.path, "gateway-tests-errors.");
    assert!(errors.iter().any(|l| l["request_id"] == down_id.as_str()));
    assert!(errors.iter().all(|l| l["level"] == "ERROR"), "{errors:#?}");
}
