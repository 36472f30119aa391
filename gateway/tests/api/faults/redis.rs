//! The shared rate limiter's Redis gone: fail open and fail closed.

use super::*;

/// A gateway limiting through a private Redis, with the api budget at `limit` per hour.
async fn gateway_on_redis(
    redis: &PrivateRedis,
    limit: u32,
    mode: gateway::limits::RedisFailureMode,
) -> (ProjectService, Gateway) {
    let project = ProjectService::start(Db::Sqlite).await;
    let mut config = gateway_config(&project.url());
    config.limits = generous_limits();
    config.limits.api = format!("{limit}/1h").parse().unwrap();
    config.limits.redis_url = Some(redis.url().into());
    config.limits.redis_failure = mode;
    let gw = Gateway::start(config).await;
    (project, gw)
}

async fn list(gw: &Gateway, user: &str) -> (u16, Option<u32>, Duration, String) {
    let started = Instant::now();
    let response = gw
        .get("/api/projects", user)
        .timeout(CLIENT_DEADLINE)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let remaining = response
        .headers()
        .get("ratelimit-remaining")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = response.text().await.unwrap();
    (status, remaining, elapsed, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_to_the_in_process_limiter_and_recovers() {
    let mut redis = PrivateRedis::start().await;
    let (_project, gw) =
        gateway_on_redis(&redis, 30, gateway::limits::RedisFailureMode::Open).await;
    let user = unique_user("fault_redis_open");

    // Through Redis: 10 of the 30 spent.
    for expected in (20..30).rev() {
        let (status, remaining, _, body) = list(&gw, &user).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(remaining, Some(expected));
    }

    redis.kill();
    // Load while Redis is gone: every request is answered at once, and still limited, by the
    // in-process limiter, whose budget of 30 this user has not touched.
    let requests = (0..40).map(|_| list(&gw, &user));
    let answers = futures::future::join_all(requests).await;
    let served = answers.iter().filter(|a| a.0 == 200).count();
    let limited = answers.iter().filter(|a| a.0 == 429).count();
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    for (status, _, _, body) in &answers {
        assert!(matches!(status, 200 | 429), "{status}: {body}");
    }
    assert_eq!(
        served, 30,
        "the in-process budget applies while Redis is down"
    );
    assert_eq!(limited, 10);
    assert!(
        slowest < Duration::from_secs(3),
        "slowest answer {slowest:?}"
    );
    // Liveness and other users are unaffected.
    let (status, _, _, body) = list(&gw, &unique_user("fault_redis_other")).await;
    assert_eq!(status, 200, "{body}");

    redis.start_again().await;
    // Back on Redis, which restarted empty: the user's shared budget is whole again.
    let started = Instant::now();
    loop {
        let (status, remaining, _, body) = list(&gw, &user).await;
        if status == 200 && remaining == Some(29) {
            break;
        }
        assert!(
            matches!(status, 200 | 429),
            "{status} while recovering: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway did not go back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "Redis down (fail-open): {served} served and {limited} limited in process, slowest \
         {slowest:?}; back on Redis {:?} after it restarted; nothing refused with 5xx",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_with_503_when_configured_and_recovers() {
    let mut redis = PrivateRedis::start().await;
    let (_project, gw) =
        gateway_on_redis(&redis, 30, gateway::limits::RedisFailureMode::Closed).await;
    let user = unique_user("fault_redis_closed");
    let (status, remaining, _, body) = list(&gw, &user).await;
    assert_eq!((status, remaining), (200, Some(29)), "{body}");

    redis.kill();
    let requests = (0..20).map(|_| async {
        let started = Instant::now();
        let response = gw.get("/api/projects", &user).send().await.unwrap();
        let elapsed = started.elapsed();
        assert!(response.headers().contains_key("retry-after"));
        (assert_problem(response, 503).await, elapsed)
    });
    for (problem, elapsed) in futures::future::join_all(requests).await {
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("rate limiter"), "{detail}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
    let health = gw.http.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "unlimited routes still answer");

    redis.start_again().await;
    let started = Instant::now();
    loop {
        let (status, _, _, body) = list(&gw, &user).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway did not go back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "Redis down (fail-closed): 20 of 20 refused with 503; serving again {:?} after Redis \
         restarted",
        started.elapsed()
    );
}
