//! Rate limits: per user and group in process; one shared budget through Redis.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_api_call_in_the_window_is_refused() {
    // Default limits: api 100 / 15 min.
    let stack = Stack::start_with(Db::Sqlite, |_| {}).await;
    let gw = &stack.gateway;
    let user = unique_user("limited");
    for i in 0..100 {
        let response = gw.get("/api/projects", &user).send().await.unwrap();
        assert_eq!(response.status(), 200, "call {}", i + 1);
        assert_eq!(response.headers()["ratelimit-limit"], "100");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            (99 - i).to_string().as_str()
        );
    }
    let refused = gw.get("/api/projects", &user).send().await.unwrap();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=900).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let body = assert_problem(refused, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("api"));

    // Another user has a budget of their own.
    let other = gw
        .get("/api/projects", &unique_user("other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_limited_per_client_ip() {
    let stack = Stack::start_with(Db::Sqlite, |c| {
        c.limits.api = "5/1h".parse().unwrap();
    })
    .await;
    let gw = &stack.gateway;
    for _ in 0..5 {
        let response = gw
            .http
            .get(gw.url("/api/projects"))
            .bearer_auth("bad")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let refused = gw
        .http
        .get(gw.url("/api/projects"))
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_problem(refused, 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_redis_enforce_one_budget_under_concurrent_load() {
    let project = ProjectService::start(Db::Sqlite).await;
    let mut config = gateway_config(&project.url());
    config.limits.api = "40/1h".parse().unwrap();
    config.limits.redis_url = Some(service_runtime::testing::redis_url().into());
    let first = Gateway::start(config.clone()).await;
    // Its own key database: replicas share PostgreSQL in production, never one SQLite file.
    config.database_url = gateway_config("http://unused").database_url;
    let second = Gateway::start(config).await;

    let user = unique_user("shared");
    let requests = (0..120).map(|i| {
        let gw = if i % 2 == 0 { &first } else { &second };
        gw.get("/api/projects", &user).send()
    });
    let responses = futures::future::join_all(requests).await;
    let mut passed = 0;
    let mut refused = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => passed += 1,
            429 => refused += 1,
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert_eq!(passed, 40, "exactly the limit passes across both gateways");
    assert_eq!(refused, 80);

    // The budget is shared: once spent through one gateway, the other refuses too.
    let later = unique_user("shared_seq");
    for _ in 0..40 {
        assert_eq!(
            first
                .get("/api/projects", &later)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        second
            .get("/api/projects", &later)
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
