//! A downstream that is down answers 503 fast, readiness says which, and the gateway recovers by
//! itself when the service is back.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_gives_fast_503s_and_recovery() {
    let mut stack = Stack::start(Db::Sqlite).await;
    let user = unique_user("avail");
    let created = stack.gateway.create_project(&user, "survivor").await;
    let id = created["id"].as_str().unwrap().to_string();

    let health = stack
        .gateway
        .http
        .get(stack.gateway.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = stack
        .gateway
        .http
        .get(stack.gateway.url("/ready"))
        .send()
        .await
        .unwrap();
    let body = assert_problem(ready, 503).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("project-service"),
        "project-service is up: {detail}"
    );
    assert!(detail.contains("ai-service"), "{detail}");

    stack.project.server.stop();

    for path in [format!("/api/projects/{id}"), "/api/projects".to_string()] {
        let started = Instant::now();
        let response = stack.gateway.get(&path, &user).send().await.unwrap();
        let elapsed = started.elapsed();
        assert!(response.headers().contains_key("retry-after"));
        let body = assert_problem(response, 503).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("project-service"), "{detail}");
        assert!(
            !detail.contains("tcp") && !detail.contains("transport"),
            "internals leak: {detail}"
        );
        assert!(elapsed < Duration::from_secs(1), "503 took {elapsed:?}");
    }
    let started = Instant::now();
    let ready = stack
        .gateway
        .http
        .get(stack.gateway.url("/ready"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let body = assert_problem(ready, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("project-service"));
    let health = stack
        .gateway
        .http
        .get(stack.gateway.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on downstreams"
    );

    stack.project.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = stack
            .gateway
            .get(&format!("/api/projects/{id}"), &user)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let project: serde_json::Value = response.json().await.unwrap();
            assert_eq!(
                project["name"], "survivor",
                "acknowledged data survived the restart"
            );
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "the gateway did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = stack
        .gateway
        .http
        .get(stack.gateway.url("/ready"))
        .send()
        .await
        .unwrap();
    let body = assert_problem(ready, 503).await;
    assert!(!body["detail"].as_str().unwrap().contains("project-service"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_docs_are_served() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let doc: serde_json::Value = gw
        .http
        .get(gw.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/projects",
        "/api/projects/{id}",
        "/api/projects/{id}/files/{path}",
        "/health",
        "/ready",
        "/api/auth/keys",
        "/api/auth/me",
        "/api/ai/generate",
        "/api/ai/usage",
        "/api/sandbox/execute",
        "/api/sandbox/languages",
        "/api/deploy",
        "/api/deployments/{id}/events",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let docs = gw.http.get(gw.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    assert!(!html.contains("https://cdn"), "the docs page works offline");
}
