//! One request is one trace, from the gateway down to SQL and the provider; a collector that is
//! down costs requests nothing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_from_the_gateway_into_project_service() {
    let receiver = OtlpReceiver::default();
    let collector = receiver.start();
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{}", collector.addr));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();
    let stack = Stack::start(Db::Sqlite).await;
    let user = unique_user("trace");

    // A request of its own starts a trace at the gateway...
    let project = stack.gateway.create_project(&user, "traced").await;
    let http = receiver.wait_for(&telemetry, "POST /api/projects").await;
    let client = receiver
        .wait_for(
            &telemetry,
            "autocrea.project.v1.ProjectService/CreateProject",
        )
        .await;
    let grpc = receiver
        .wait_for(
            &telemetry,
            "/autocrea.project.v1.ProjectService/CreateProject",
        )
        .await;
    assert_eq!(http.service_name, "gateway-tests");
    assert_eq!(http.trace_id.len(), 32);
    assert_eq!(
        http.parent_span_id, "",
        "the gateway's span is the root: {http:?}"
    );
    assert_eq!(grpc.trace_id, http.trace_id, "one trace across the hop");
    assert_eq!(
        client.parent_span_id, http.span_id,
        "the gateway's gRPC call is a child of its request"
    );
    assert_eq!(
        grpc.parent_span_id, client.span_id,
        "project-service's span is a child of the gateway's call"
    );
    let insert = receiver
        .wait_in_trace(&telemetry, &http.trace_id, "INSERT projects")
        .await;
    assert_eq!(insert.parent_span_id, grpc.span_id);
    assert_eq!(insert.attribute("db.system"), "sqlite");

    // ...and one from the frontend continues the frontend's trace.
    let id = project["id"].as_str().unwrap();
    let response = stack
        .gateway
        .get(&format!("/api/projects/{id}"), &user)
        .header(
            "traceparent",
            format!("00-{TRACE_ID}-{FRONTEND_SPAN_ID}-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let http = receiver
        .wait_for(&telemetry, "GET /api/projects/{id}")
        .await;
    let client = receiver
        .wait_for(&telemetry, "autocrea.project.v1.ProjectService/GetProject")
        .await;
    let grpc = receiver
        .wait_for(&telemetry, "/autocrea.project.v1.ProjectService/GetProject")
        .await;
    assert_eq!(http.trace_id, TRACE_ID);
    assert_eq!(http.parent_span_id, FRONTEND_SPAN_ID);
    assert_eq!(client.trace_id, TRACE_ID);
    assert_eq!(client.parent_span_id, http.span_id);
    assert_eq!(grpc.trace_id, TRACE_ID);
    assert_eq!(grpc.parent_span_id, client.span_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_request_is_one_trace_down_to_the_database() {
    let receiver = OtlpReceiver::default();
    let collector = receiver.start();
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{}", collector.addr));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();
    // project-service on PostgreSQL, the gateway's key table on SQLite.
    let stack = Stack::start(Db::Postgres).await;
    let user = unique_user("dbtrace");
    let project = stack.gateway.create_project(&user, "db-traced").await;
    let id = project["id"].as_str().unwrap();
    let created = stack
        .gateway
        .post("/api/auth/keys", &user)
        .json(&serde_json::json!({"name": "tracing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let key: Value = created.json().await.unwrap();
    let key = key["key"].as_str().unwrap().to_string();

    let response = stack
        .gateway
        .http
        .get(stack.gateway.url(&format!("/api/projects/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The gateway's request span is the root of its trace...
    let http = receiver
        .wait_for(&telemetry, "GET /api/projects/{id}")
        .await;
    assert_eq!(http.parent_span_id, "", "{http:#?}");
    let trace = http.trace_id.clone();
    // ...the API key lookup is a database span in it...
    let key_lookup = receiver
        .wait_in_trace(&telemetry, &trace, "SELECT api_keys")
        .await;
    assert_eq!(key_lookup.attribute("db.system"), "sqlite");
    assert_eq!(key_lookup.attribute("db.operation"), "SELECT");
    assert_eq!(key_lookup.attribute("db.sql.table"), "api_keys");
    // ...the gateway's gRPC call is a client span under the request...
    let client = receiver
        .wait_in_trace(
            &telemetry,
            &trace,
            "autocrea.project.v1.ProjectService/GetProject",
        )
        .await;
    assert_eq!(client.kind, CLIENT);
    assert_eq!(client.parent_span_id, http.span_id);
    assert_eq!(client.attribute("rpc.system"), "grpc");
    assert_eq!(
        client.attribute("rpc.service"),
        "autocrea.project.v1.ProjectService"
    );
    assert_eq!(client.attribute("rpc.method"), "GetProject");
    assert_eq!(client.attribute("peer.service"), "project-service");
    assert_eq!(client.attribute("rpc.grpc.status_code"), "0");
    // ...project-service's server span is the call's child...
    let server = receiver
        .wait_in_trace(
            &telemetry,
            &trace,
            "/autocrea.project.v1.ProjectService/GetProject",
        )
        .await;
    assert_eq!(server.kind, SERVER);
    assert_eq!(server.parent_span_id, client.span_id);
    // ...and its query is the server span's child, described without its values.
    let query = receiver
        .wait_in_trace(&telemetry, &trace, "SELECT projects")
        .await;
    assert_eq!(query.kind, CLIENT);
    assert_eq!(query.parent_span_id, server.span_id);
    assert_eq!(query.attribute("db.system"), "postgresql");
    assert_eq!(query.attribute("db.operation"), "SELECT");
    assert_eq!(query.attribute("db.sql.table"), "projects");
    let statement = query.attribute("db.statement");
    assert!(statement.contains("$1"), "{statement}");
    let everything = format!("{:?}", receiver.spans.lock().unwrap());
    for secret in [id, user.as_str(), key.as_str(), "db-traced"] {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked into a span attribute"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_request_traces_the_provider_call_and_the_usage_ledger() {
    let receiver = OtlpReceiver::default();
    let collector = receiver.start();
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{}", collector.addr));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();

    let fake = FakeProvider::start().await;
    let (database_url, _data) = fresh_sqlite_url();
    let mut ai_config = ai_service::Config::new(database_url);
    ai_config.caller_keys = Some(service_runtime::testing::caller_keys());
    ai_config.provider = Some(ai_service::ProviderConfig::anthropic(fake.url(), KEY));
    // A budget makes every call read the month's spend first.
    ai_config.monthly_token_budget = Some(1_000_000);
    let ai = start_ai_service(ai_config);
    let project = ProjectService::start(Db::Sqlite).await;
    let mut config = gateway_config(&project.url());
    config.services.ai = format!("http://{}", ai.addr);
    config.limits = generous_limits();
    let gateway = Gateway::start(config).await;

    let user = unique_user("aitrace");
    let marker = format!("CODE-MARKER-{}", uuid::Uuid::new_v4().simple());
    let code = format!("print('{marker}')");
    let response = gateway
        .post("/api/ai/explain", &user)
        .json(&serde_json::json!({"code": code, "language": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let http = receiver.wait_for(&telemetry, "POST /api/ai/explain").await;
    let trace = http.trace_id.clone();
    let client = receiver
        .wait_in_trace(&telemetry, &trace, "autocrea.ai.v1.AiService/Explain")
        .await;
    assert_eq!(client.parent_span_id, http.span_id);
    assert_eq!(client.attribute("peer.service"), "ai-service");
    let server = receiver
        .wait_in_trace(&telemetry, &trace, "/autocrea.ai.v1.AiService/Explain")
        .await;
    assert_eq!(server.parent_span_id, client.span_id);
    // The budget check and the ledger row are queries of the call...
    let spend = receiver
        .wait_in_trace(&telemetry, &trace, "SELECT ai_usage")
        .await;
    let ledger = receiver
        .wait_in_trace(&telemetry, &trace, "INSERT ai_usage")
        .await;
    for query in [&spend, &ledger] {
        assert_eq!(query.attribute("db.system"), "sqlite");
        assert_eq!(query.attribute("db.sql.table"), "ai_usage");
    }
    // ...and the provider call is an HTTP client span under ai.provider.
    let provider = receiver
        .wait_in_trace(&telemetry, &trace, "ai.provider")
        .await;
    let attempt = receiver
        .wait_in_trace(&telemetry, &trace, "POST anthropic")
        .await;
    assert_eq!(attempt.kind, CLIENT);
    assert_eq!(attempt.parent_span_id, provider.span_id);
    assert_eq!(attempt.attribute("http.request.method"), "POST");
    assert_eq!(attempt.attribute("server.address"), "127.0.0.1");
    assert_eq!(attempt.attribute("http.response.status_code"), "200");
    assert_eq!(attempt.attribute("peer.service"), "anthropic");
    assert!(
        fake.seen()
            .iter()
            .any(|s| s.body.to_string().contains(&marker)),
        "the code reached the provider"
    );
    let everything = format!("{:?}", receiver.spans.lock().unwrap());
    for secret in [marker.as_str(), KEY, user.as_str()] {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked into a span attribute"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_succeed_quickly_while_the_collector_is_down() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut settings = settings();
    settings.otlp_endpoint = Some(format!("http://{addr}"));
    let telemetry = service_runtime::telemetry::init_with(settings).unwrap();
    let stack = Stack::start(Db::Sqlite).await;
    let user = unique_user("nocollector");

    // A first export fails (connection refused) before the measured requests.
    stack.gateway.create_project(&user, "first").await;
    telemetry.flush();
    for i in 0..20 {
        let started = Instant::now();
        stack.gateway.create_project(&user, &format!("p{i}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "request {i} took {:?}",
            started.elapsed()
        );
    }
    let response = stack
        .gateway
        .get("/api/projects", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Shutting down gives up on the unreachable collector within the export timeout.
    let dropped = Instant::now();
    drop(telemetry);
    assert!(dropped.elapsed() < Duration::from_secs(10));
}
