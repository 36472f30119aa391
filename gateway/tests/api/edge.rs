//! The browser-facing edge, over the wire: CORS preflights answered before auth and limits,
//! CORS headers only for allowed origins, security headers on every kind of answer, CSRF defence
//! for cookie sessions, 431 for oversized headers, client IPs behind trusted proxies, limits that
//! fire before any database lookup, and the operations endpoints served apart.

use std::net::SocketAddr;

use gateway::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::ai::{AiStack, anthropic, generate_body};
use crate::helpers::*;

const APP: &str = "http://app.autocrea.test:3000";
const EVIL: &str = "http://evil.example.test";

fn allow_app(config: &mut Config) {
    config.edge.allowed_origins = vec![APP.to_string()];
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn preflight(gateway: &Gateway, path: &str, origin: &str, method: &str) -> reqwest::Response {
    gateway
        .http
        .request(Method::OPTIONS, gateway.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_before_auth_and_limits_for_allowed_origins_only() {
    let stack = Stack::start_with(Db::Sqlite, |c| {
        c.limits = generous_limits();
        c.limits.api = "3/1h".parse().unwrap();
        allow_app(c);
    })
    .await;
    let gw = &stack.gateway;
    let some_id = "0190b3b4-6c2e-7d3a-9f1e-4b5c6d7e8f90";
    // Every /api route answers its preflight, the streaming ones included, with no credentials,
    // however many: none is counted against the api budget of 3.
    for (path, method) in [
        ("/api/projects", "POST"),
        ("/api/projects", "GET"),
        (&*format!("/api/projects/{some_id}"), "DELETE"),
        (
            &*format!("/api/projects/{some_id}/files/src/main.py"),
            "PUT",
        ),
        ("/api/ai/generate", "POST"),
        ("/api/ai/chat", "POST"),
        ("/api/sandbox/execute", "POST"),
        (&*format!("/api/deployments/{some_id}/events"), "GET"),
        ("/api/deploy", "POST"),
        ("/api/auth/keys", "POST"),
        ("/api/projects", "PATCH"),
    ] {
        let response = preflight(gw, path, APP, method).await;
        assert_eq!(response.status(), 204, "{method} {path}");
        assert_eq!(
            header(&response, "access-control-allow-origin").as_deref(),
            Some(APP)
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert!(
            list(header(&response, "access-control-allow-methods"))
                .contains(&method.to_ascii_lowercase()),
            "{method} {path}"
        );
        let allowed_headers = list(header(&response, "access-control-allow-headers"));
        assert!(allowed_headers.contains(&"authorization".to_string()));
        assert!(allowed_headers.contains(&"content-type".to_string()));
        assert_eq!(
            header(&response, "access-control-max-age").as_deref(),
            Some("600")
        );
        assert!(list(header(&response, "vary")).contains(&"origin".to_string()));
        assert!(header(&response, "x-request-id").is_some());
    }

    // The actual request from the allowed origin: CORS headers, exposed headers, and the whole
    // budget still there (3 - 1 = 2 left).
    let user = unique_user("cors");
    let response = gw
        .get("/api/projects", &user)
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        header(&response, "ratelimit-remaining").as_deref(),
        Some("2")
    );
    assert!(list(header(&response, "vary")).contains(&"origin".to_string()));
    let exposed = list(header(&response, "access-control-expose-headers"));
    for name in [
        "x-request-id",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
        "etag",
        "location",
    ] {
        assert!(
            exposed.contains(&name.to_string()),
            "{name} not exposed: {exposed:?}"
        );
    }
    // Errors carry them too, so the page can read the problem.
    let unauthenticated = gw
        .http
        .get(gw.url("/api/projects"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&unauthenticated, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_problem(unauthenticated, 401).await;

    // Another origin: the preflight is refused (problem+json, no CORS headers) and an actual
    // request is answered without CORS headers, so the browser withholds it from the page.
    let refused = preflight(gw, "/api/projects", EVIL, "POST").await;
    assert!(header(&refused, "access-control-allow-origin").is_none());
    let body = assert_problem(refused, 403).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("CORS_ALLOWED_ORIGINS")
    );
    let foreign = gw
        .get("/api/projects", &user)
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
    assert!(header(&foreign, "access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_allow_list_no_origin_gets_cross_origin_access() {
    let stack = Stack::start(Db::Sqlite).await;
    let refused = preflight(&stack.gateway, "/api/projects", APP, "GET").await;
    assert!(header(&refused, "access-control-allow-origin").is_none());
    assert_problem(refused, 403).await;
    assert!(gateway::config::parse_origins("*").is_err());
    assert!(gateway::config::parse_origins("https://app.example.com/").is_err());
    assert!(gateway::config::parse_origins("app.example.com").is_err());
    assert_eq!(
        gateway::config::parse_origins(" https://App.Example.com , http://127.0.0.1:3000").unwrap(),
        vec!["https://app.example.com", "http://127.0.0.1:3000"]
    );
}

fn assert_security_headers(response: &reqwest::Response, what: &str, api: bool) {
    assert_eq!(
        header(response, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(response, "referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        header(response, "x-frame-options").as_deref(),
        Some("DENY"),
        "{what}"
    );
    let csp = header(response, "content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    if api {
        assert_eq!(
            header(response, "cache-control").as_deref(),
            Some("no-store"),
            "{what}"
        );
    }
    assert_eq!(
        header(response, "strict-transport-security").as_deref(),
        Some("max-age=31536000; includeSubDomains"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_answer_carries_the_security_headers() {
    let stack = AiStack::start_with(
        anthropic,
        |_| {},
        |c| {
            c.edge.hsts_max_age = Some(std::time::Duration::from_secs(31_536_000));
            allow_app(c);
        },
    )
    .await;
    let gw = &stack.gateway;
    let user = unique_user("headers");

    // JSON.
    let usage = gw.get("/api/ai/usage", &user).send().await.unwrap();
    assert_eq!(usage.status(), 200);
    assert_security_headers(&usage, "JSON", true);
    // Errors: 401 from the guard, 400 from validation, 404 from the router.
    let unauthorized = gw.http.get(gw.url("/api/ai/usage")).send().await.unwrap();
    assert_security_headers(&unauthorized, "401", true);
    let invalid = gw
        .post("/api/ai/generate", &user)
        .json(&json!({"prompt": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    assert_security_headers(&invalid, "400", true);
    let unknown = gw.http.get(gw.url("/nothing/here")).send().await.unwrap();
    assert_security_headers(&unknown, "404", false);
    // An event stream.
    let stream = gw
        .post("/api/ai/generate", &user)
        .header("accept", "text/event-stream")
        .json(&generate_body("hello world in python"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        header(&stream, "content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_security_headers(&stream, "SSE", true);
    assert!(stream.text().await.unwrap().contains("event: done"));
    // A preflight.
    let pre = preflight(gw, "/api/ai/generate", APP, "POST").await;
    assert_security_headers(&pre, "preflight", true);
    // The docs page: its own policy, which lets its inline script (by hash) fetch
    // /openapi.json and nothing more.
    let docs = gw.http.get(gw.url("/docs")).send().await.unwrap();
    assert_security_headers(&docs, "/docs", false);
    let csp = header(&docs, "content-security-policy").unwrap();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let health = gw.http.get(gw.url("/health")).send().await.unwrap();
    assert_security_headers(&health, "/health", false);
    assert_eq!(stack.fake.calls(), 1);
}

fn cookie_post(gw: &Gateway, user: &str) -> reqwest::RequestBuilder {
    gw.http
        .post(gw.url("/api/projects"))
        .header("cookie", format!("__session={}", token(user)))
        .json(&json!({"name": "csrf", "language": "python"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_write_only_from_allowed_or_same_origins() {
    let stack = Stack::start_with(Db::Sqlite, |c| {
        c.limits = generous_limits();
        allow_app(c);
    })
    .await;
    let gw = &stack.gateway;
    let user = unique_user("csrf");

    let forged = cookie_post(gw, &user)
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    let body = assert_problem(forged, 403).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let no_origin = cookie_post(gw, &user).send().await.unwrap();
    assert_problem(no_origin, 403).await;
    let cross_site = cookie_post(gw, &user)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_problem(cross_site, 403).await;
    let null_origin = cookie_post(gw, &user)
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_problem(null_origin, 403).await;
    // Nothing was created by any of them.
    let listed: Value = gw
        .get("/api/projects", &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");

    let from_app = cookie_post(gw, &user)
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(from_app.status(), 201);
    assert_eq!(
        header(&from_app, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    let same_origin = cookie_post(gw, &user)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 201);
    // Safe methods and bearer tokens need no proof of origin.
    let read = gw
        .http
        .get(gw.url("/api/projects"))
        .header("cookie", format!("__session={}", token(&user)))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let bearer = gw
        .post("/api/projects", &user)
        .header("origin", EVIL)
        .json(&json!({"name": "bearer", "language": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_larger_than_the_budget_get_431() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("big");
    let fits = gw
        .get("/api/projects", &user)
        .header("x-padding", "a".repeat(12 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    for (name, size) in [("x-padding", 17 * 1024), ("cookie", 20 * 1024)] {
        let value = format!("a={}", "b".repeat(size));
        let too_big = gw
            .get("/api/projects", &user)
            .header(name, value)
            .send()
            .await
            .unwrap();
        let body = assert_problem(too_big, 431).await;
        assert!(body["detail"].as_str().unwrap().contains("16384"), "{body}");
    }
    // Split over many headers, the total counts.
    let mut request = gw.get("/api/projects", &user);
    for i in 0..40 {
        request = request.header(format!("x-pad-{i}"), "c".repeat(500));
    }
    assert_problem(request.send().await.unwrap(), 431).await;
}

/// An unauthenticated GET: 401, or 429 once the client's budget is used up.
async fn anonymous(gw: &Gateway, forwarded_for: Option<&str>) -> u16 {
    let mut request = gw.http.get(gw.url("/api/projects"));
    if let Some(chain) = forwarded_for {
        request = request.header("x-forwarded-for", chain);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_behind_a_trusted_proxy_is_the_right_most_untrusted_address() {
    let stack = Stack::start_with(Db::Sqlite, |c| {
        c.limits = generous_limits();
        c.limits.api = "2/1h".parse().unwrap();
        // The test's requests come from 127.0.0.1: a trusted proxy here.
        c.edge.trusted_proxies =
            gateway::client_ip::parse_networks("127.0.0.0/8, 10.0.0.0/8").unwrap();
    })
    .await;
    let gw = &stack.gateway;
    // Client 203.0.113.1 through proxy 10.0.0.2; the forged left-most entries change nothing.
    for forged in ["1.1.1.1", "2.2.2.2"] {
        let chain = format!("{forged}, 203.0.113.1, 10.0.0.2");
        assert_eq!(anonymous(gw, Some(&chain)).await, 401);
    }
    assert_eq!(
        anonymous(gw, Some("3.3.3.3, 203.0.113.1, 10.0.0.2")).await,
        429
    );
    // Another client has its own budget.
    assert_eq!(anonymous(gw, Some("203.0.113.2")).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_untrusted_peers_are_ignored() {
    let stack = Stack::start_with(Db::Sqlite, |c| {
        c.limits = generous_limits();
        c.limits.api = "2/1h".parse().unwrap();
        c.edge.trusted_proxies = gateway::client_ip::parse_networks("10.0.0.0/8").unwrap();
    })
    .await;
    let gw = &stack.gateway;
    assert_eq!(anonymous(gw, Some("203.0.113.1")).await, 401);
    assert_eq!(anonymous(gw, Some("203.0.113.2")).await, 401);
    // Whatever it claims, the peer 127.0.0.1 is the client, and its budget is used up.
    assert_eq!(anonymous(gw, Some("203.0.113.3")).await, 429);
    assert_eq!(anonymous(gw, None).await, 429);
}

async fn key_lookups(gw: &Gateway) -> u64 {
    gw.metric("api_key_lookups_total", &[]).await as u64
}

fn made_up_key(i: usize) -> String {
    format!("acr_{:0>43}", format!("madeUp{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_made_up_keys_are_limited_before_any_database_lookup() {
    let stack = Stack::start_with(Db::Postgres, |c| {
        c.limits = generous_limits();
        c.limits.api = "5/1h".parse().unwrap();
    })
    .await;
    let gw = &stack.gateway;
    let before = key_lookups(gw).await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let response = gw
            .http
            .get(gw.url("/api/projects"))
            .bearer_auth(made_up_key(i))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Five keys looked up, then the client's budget was used up: 25 requests cost no query.
    assert_eq!(key_lookups(gw).await - before, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_found_unknown_is_refused_from_memory() {
    let stack = Stack::start_with(Db::Postgres, |c| c.limits = generous_limits()).await;
    let gw = &stack.gateway;
    let before = key_lookups(gw).await;
    for _ in 0..10 {
        let response = gw
            .http
            .get(gw.url("/api/projects"))
            .bearer_auth(made_up_key(7))
            .send()
            .await
            .unwrap();
        assert_problem(response, 401).await;
    }
    assert_eq!(key_lookups(gw).await - before, 1);
    // A real key still works, looked up once.
    let user = unique_user("realkey");
    let created: Value = gw
        .post("/api/auth/keys", &user)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let ok = gw
        .http
        .get(gw.url("/api/projects"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_can_be_served_apart_from_the_api() {
    let project = ProjectService::start(Db::Sqlite).await;
    let config = gateway_config(&project.url());
    let ops = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ops.set_nonblocking(true).unwrap();
    let ops_addr = ops.local_addr().unwrap();
    let server = Server::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        move |listener, shutdown| {
            let ops = tokio::net::TcpListener::from_std(ops).unwrap();
            gateway::run_with(config, listener, Some(ops), async {
                let _ = shutdown.await;
            })
        },
    );
    let http = service_runtime::tls::http_client().build().unwrap();
    let public = format!("http://{}", server.addr);
    let private = format!("http://{ops_addr}");
    // The API listener no longer serves them; the ops listener does.
    let health = http.get(format!("{public}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    for path in ["/metrics", "/ready"] {
        let hidden = http.get(format!("{public}{path}")).send().await.unwrap();
        assert_eq!(hidden.status(), 404, "{path} on the public listener");
    }
    let metrics = http.get(format!("{private}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("http_requests_total")
    );
    // Readiness answers there (503: only project-service runs in this test).
    let ready = http.get(format!("{private}/ready")).send().await.unwrap();
    let body = assert_problem(ready, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("ai"), "{body}");
}
