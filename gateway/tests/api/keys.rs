//! Personal API keys through the gateway.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::helpers::*;

async fn create_key(gw: &Gateway, user: &str, body: Value) -> Value {
    let response = gw
        .post("/api/auth/keys", user)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

fn with_key(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> reqwest::RequestBuilder {
    gw.http.request(method, gw.url(path)).bearer_auth(key)
}

/// Collects every log line of this test process (nextest runs each test in its own process).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_scopes_and_secrecy() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .init();

    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let alice = unique_user("alice");
    let project = gw.create_project(&alice, "keyed").await;
    let id = project["id"].as_str().unwrap();

    // Create: the secret is shown once, with a recognisable prefix and 32 random bytes.
    let created = create_key(gw, &alice, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("acr_") && key.len() == 47, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(
        created["scopes"],
        json!(["read", "write", "ai", "sandbox", "deploy"])
    );

    // Use: the key works like the session token, for its owner.
    let got = with_key(
        gw,
        reqwest::Method::GET,
        &format!("/api/projects/{id}"),
        &key,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(got.status(), 200);
    let written = with_key(
        gw,
        reqwest::Method::PUT,
        &format!("/api/projects/{id}/files/a.txt"),
        &key,
    )
    .json(&json!({"content": "by key"}))
    .send()
    .await
    .unwrap();
    assert_eq!(written.status(), 201);
    let me: Value = with_key(gw, reqwest::Method::GET, "/api/auth/me", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["userId"], alice.as_str());
    assert_eq!(me["method"], "apiKey");
    assert_eq!(me["keyId"], created["id"]);
    let me_jwt: Value = gw
        .get("/api/auth/me", &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me_jwt["method"], "jwt");

    // List: no secret anywhere.
    let list = gw
        .get("/api/auth/keys", &alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!list.contains(&key));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("key").is_none());
    assert_eq!(list["items"][0]["prefix"], created["prefix"]);

    // A key cannot manage keys.
    let minted = with_key(gw, reqwest::Method::POST, "/api/auth/keys", &key)
        .json(&json!({"name": "escalate"}))
        .send()
        .await
        .unwrap();
    assert_problem(minted, 403).await;

    // A read-only key reads but cannot write.
    let read_only = create_key(gw, &alice, json!({"name": "ro", "scopes": ["read"]})).await;
    let ro = read_only["key"].as_str().unwrap();
    assert_eq!(
        with_key(
            gw,
            reqwest::Method::GET,
            &format!("/api/projects/{id}/files/a.txt"),
            ro
        )
        .send()
        .await
        .unwrap()
        .status(),
        200
    );
    let denied = with_key(
        gw,
        reqwest::Method::PUT,
        &format!("/api/projects/{id}/files/b.txt"),
        ro,
    )
    .json(&json!({"content": "no"}))
    .send()
    .await
    .unwrap();
    let body = assert_problem(denied, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("write"));

    // User B's key never reaches user A's project.
    let bob = unique_user("bob");
    let bobs = create_key(gw, &bob, json!({"name": "bob"})).await;
    let bob_key = bobs["key"].as_str().unwrap();
    let response = with_key(
        gw,
        reqwest::Method::GET,
        &format!("/api/projects/{id}"),
        bob_key,
    )
    .send()
    .await
    .unwrap();
    assert_problem(response, 404).await;

    // Revoke: refused on the next request.
    let revoked = gw
        .delete(
            &format!("/api/auth/keys/{}", created["id"].as_str().unwrap()),
            &alice,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let refused = with_key(
        gw,
        reqwest::Method::GET,
        &format!("/api/projects/{id}"),
        &key,
    )
    .send()
    .await
    .unwrap();
    assert_problem(refused, 401).await;
    // Bob cannot revoke Alice's keys.
    let response = gw
        .delete(
            &format!("/api/auth/keys/{}", read_only["id"].as_str().unwrap()),
            &bob,
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;

    // A forged key with a real prefix is refused.
    let forged = format!("{}{}", &key[..12], "A".repeat(35));
    let response = with_key(gw, reqwest::Method::GET, "/api/projects", &forged)
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("API key created"), "logging was captured");
    for secret in [key.as_str(), ro, bob_key] {
        assert!(!logs.contains(secret), "a key secret reached the logs");
        assert!(
            !logs.contains(&secret[12..]),
            "part of a key secret reached the logs"
        );
    }
    assert!(
        !logs.contains(&token(&alice)),
        "a session token reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_requests_are_400() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("bad");
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "expiresInDays": 0}), "expiresInDays"),
        (
            json!({"name": "x", "expiresInDays": 100000}),
            "expiresInDays",
        ),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["admin"]}), "scopes"),
    ] {
        let response = gw
            .post("/api/auth/keys", &user)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_refused() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("exp");
    let created = create_key(gw, &user, json!({"name": "short", "expiresInDays": 1})).await;
    let key = created["key"].as_str().unwrap();
    assert!(created["expiresAt"].is_string());
    assert_eq!(
        with_key(gw, reqwest::Method::GET, "/api/projects", key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Let a day pass, as far as the key table is concerned.
    let db = service_runtime::db::Database::connect(&stack_db_url(&stack), 1)
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET expires_at_ms = 1 WHERE id = $1")
        .bind(created["id"].as_str().unwrap())
        .execute(&db.pool)
        .await
        .unwrap();
    let response = with_key(gw, reqwest::Method::GET, "/api/projects", key)
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 401).await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));
}

fn stack_db_url(stack: &Stack) -> String {
    secrecy::ExposeSecret::expose_secret(&stack.gateway_database_url).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_key_operation_in_the_window_is_refused() {
    // Default limits: auth 5 / 15 min, separate from the API group.
    let stack = Stack::start_with(Db::Sqlite, |_| {}).await;
    let gw = &stack.gateway;
    let user = unique_user("auth_limit");
    create_key(gw, &user, json!({"name": "one"})).await;
    for _ in 0..4 {
        assert_eq!(
            gw.get("/api/auth/keys", &user)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let refused = gw.get("/api/auth/keys", &user).send().await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 429).await;
    // The API group still has its own budget.
    assert_eq!(
        gw.get("/api/projects", &user)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_a_second_gateway_sharing_the_database() {
    let project = ProjectService::start(Db::Postgres).await;
    let mut config = gateway_config(&project.url());
    config.limits = generous_limits();
    config.database_url = service_runtime::testing::fresh_postgres_url().await.into();
    let first = Gateway::start(config.clone()).await;
    let second = Gateway::start(config).await;
    let user = unique_user("replicas");

    let created = create_key(&first, &user, json!({"name": "shared"})).await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(
        with_key(&second, reqwest::Method::GET, "/api/projects", key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let revoked = first
        .delete(
            &format!("/api/auth/keys/{}", created["id"].as_str().unwrap()),
            &user,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let refused = with_key(&second, reqwest::Method::GET, "/api/projects", key)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 401).await;
}
