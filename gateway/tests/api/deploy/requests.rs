//! Idempotent retries, the deploy rate limit, isolation between users, bad input, the document.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_with_an_idempotency_key_creates_one_deployment() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"projectId": project, "provider": "railway", "env": {"MODE": "prod"}});

    let send = |body: Value| {
        stack
            .gateway
            .post("/api/deploy", &user)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let retry = send(body.clone()).await.unwrap();
    assert_eq!(retry.status(), 202);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);

    // The same key for another request is a conflict, not a second deployment.
    let mut other = body.clone();
    other["target"] = json!("preview");
    let conflict = send(other).await.unwrap();
    assert_problem(conflict, 409).await;

    let page: Value = stack
        .gateway
        .get(&format!("/api/deployments?projectId={project}"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page:#}");
    stack
        .watch_to_end(&user, first["id"].as_str().unwrap())
        .await;
    assert_eq!(stack.railway.state.lock().unwrap().uploads.len(), 1);

    // A key that is too long is named as the header the client sent.
    let response = stack
        .gateway
        .post("/api/deploy", &user)
        .header("idempotency-key", "k".repeat(300))
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_group_refuses_the_11th_request_in_an_hour() {
    // Default limits: deploy 10 / hour, shared by /api/deploy and /api/deployments.
    let stack = DeployStack::start_with(|_| {}, |_| {}).await;
    let user = unique_user("dep_limit");
    let project = stack.site(&user).await;
    for i in 0..10 {
        let response = stack
            .post_deploy(&user, json!({"projectId": project, "provider": "netlify"}))
            .await;
        assert_eq!(response.status(), 202, "request {}", i + 1);
        assert_eq!(response.headers()["ratelimit-limit"], "10");
    }
    let refused = stack
        .post_deploy(&user, json!({"projectId": project, "provider": "netlify"}))
        .await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let problem = assert_problem(refused, 429).await;
    assert!(problem["detail"].as_str().unwrap().contains("deploy"));
    let listing = stack
        .gateway
        .get("/api/deployments", &user)
        .send()
        .await
        .unwrap();
    assert_problem(listing, 429).await;

    // Projects are another group, and other users have budgets of their own.
    let projects = stack
        .gateway
        .get("/api/projects", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(projects.status(), 200);
    let other = stack
        .gateway
        .get("/api/deployments", &unique_user("dep_other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_deployment_is_404() {
    let stack = DeployStack::start().await;
    let alice = unique_user("alice");
    let bob = unique_user("bob");
    let project = stack.site(&alice).await;
    let deployment = stack
        .deploy(&alice, json!({"projectId": project, "provider": "vercel"}))
        .await;
    let id = deployment["id"].as_str().unwrap();
    stack.watch_to_end(&alice, id).await;

    let gw = &stack.gateway;
    for response in [
        gw.get(&format!("/api/deployments/{id}"), &bob),
        gw.get(&format!("/api/deployments/{id}/events"), &bob),
        gw.post(&format!("/api/deployments/{id}/cancel"), &bob),
        gw.post(&format!("/api/deployments/{id}/rollback"), &bob),
    ] {
        assert_problem(response.send().await.unwrap(), 404).await;
    }
    let page: Value = gw
        .get(&format!("/api/deployments?projectId={project}"), &bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
    // Nor can Bob ship Alice's project.
    let response = stack
        .post_deploy(&bob, json!({"projectId": project, "provider": "vercel"}))
        .await;
    assert_problem(response, 404).await;
    // An id that is no deployment at all looks the same.
    let response = gw
        .get("/api/deployments/not-a-deployment", &alice)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;
    assert_eq!(stack.get(&alice, id).await["state"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_with_per_field_errors() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;

    let fields = |problem: &Value| -> Vec<String> {
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(!e["message"].as_str().unwrap().is_empty());
                e["field"].as_str().unwrap().to_string()
            })
            .collect()
    };

    let response = stack
        .post_deploy(&user, json!({"projectId": project, "provider": "heroku"}))
        .await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["provider"], "{problem:#}");

    let response = stack
        .post_deploy(&user, json!({"provider": "vercel"}))
        .await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["projectId"], "{problem:#}");

    let response = stack.post_deploy(&user, json!({})).await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["projectId", "provider"], "{problem:#}");

    let response = stack
        .post_deploy(
            &user,
            json!({"projectId": project, "provider": "vercel", "target": "staging"}),
        )
        .await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["target"], "{problem:#}");

    let response = stack
        .gateway
        .get("/api/deployments?limit=0", &user)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["limit"], "{problem:#}");

    let response = stack
        .gateway
        .get("/api/deployments?cursor=garbage", &user)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;

    // Nothing reached a provider.
    assert!(stack.vercel.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_routes_are_in_the_openapi_document() {
    let stack = DeployStack::start().await;
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
        "/api/deploy",
        "/api/deployments",
        "/api/deployments/{id}",
        "/api/deployments/{id}/events",
        "/api/deployments/{id}/cancel",
        "/api/deployments/{id}/rollback",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"].get("Deployment").is_some());
}
