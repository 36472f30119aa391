//! Encrypted connections to the data stores, against the test PostgreSQL (TLS on, a role that
//! pg_hba admits over TLS only) and a TLS-only Redis, both with certificates from a throwaway CA
//! (`deploy/scripts/test-services.sh`). Every service works with `sslmode=verify-full` and
//! `rediss://` given that CA; given another CA, each refuses to start at once and says why;
//! a plain connection where TLS is required is refused.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway::limits::RedisFailureMode;
use secrecy::SecretString;
use serde_json::json;
use service_runtime::db::Database;
use service_runtime::redis_endpoint::RedisEndpoint;
use service_runtime::testing::{
    fresh_postgres_tls_url, redis_tls_url, tls_ca_file, with_root_cert, wrong_tls_ca_file,
};

use crate::ai::{anthropic, fake_provider::FakeProvider, generate_body};
use crate::helpers::*;

fn tls_redis(ca_file: String) -> RedisEndpoint {
    RedisEndpoint::new(redis_tls_url()).with_ca_file(ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_works_over_tls_with_the_test_ca() {
    let project = ProjectService::start(Db::PostgresTls).await;

    let fake = FakeProvider::start().await;
    let mut ai_config = ai_service::Config::new(fresh_postgres_tls_url().await);
    ai_config.caller_keys = Some(service_runtime::testing::caller_keys());
    ai_config.provider = anthropic(&fake);
    ai_config.redis_url = Some(tls_redis(tls_ca_file()));
    ai_config.cache.redis_prefix = format!("{}:", unique_user("tls-cache"));
    let ai = start_ai_service(ai_config);

    let mut deploy_config =
        deploy_service::Config::with_database_url(fresh_postgres_tls_url().await);
    deploy_config.project_service_url = project.url();
    deploy_config.caller_keys = Some(service_runtime::testing::caller_keys());
    let deploy = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), |listener, stop| {
        deploy_service::run(deploy_config, listener, async {
            let _ = stop.await;
        })
    });

    let mut config = gateway_config(&project.url());
    config.services.ai = format!("http://{}", ai.addr);
    config.services.deploy = format!("http://{}", deploy.addr);
    config.database_url = SecretString::from(fresh_postgres_tls_url().await);
    config.limits = generous_limits();
    config.limits.redis_url = Some(tls_redis(tls_ca_file()));
    // Closed: a limited request is answered only when Redis answers, so a 2xx proves it did.
    config.limits.redis_failure = RedisFailureMode::Closed;
    let gw = Gateway::start(config).await;
    let user = unique_user("tls");

    // project-service's PostgreSQL, and the gateway's limiter in Redis.
    gw.create_project(&user, "over-tls").await;
    // deploy-service's PostgreSQL.
    let deployments = gw.get("/api/deployments", &user).send().await.unwrap();
    assert_eq!(deployments.status(), 200);
    // The gateway's own PostgreSQL (API keys).
    let key = gw
        .post("/api/auth/keys", &user)
        .json(&json!({"name": "tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 201, "{}", key.text().await.unwrap());
    // ai-service's ledger in PostgreSQL, and its prompt cache in Redis: the same request twice
    // reaches the provider once.
    for _ in 0..2 {
        let answer = gw
            .post("/api/ai/generate", &user)
            .json(&generate_body("a tls test"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }
    assert_eq!(
        fake.calls(),
        1,
        "the second answer came from the Redis cache"
    );
    let usage = gw.get("/api/ai/usage", &user).send().await.unwrap();
    assert_eq!(usage.status(), 200);
}

/// Runs a service's start with `run` and expects it to fail within a few seconds (no hang on
/// retries) with an error whose cause chain names the certificate.
async fn refuses_to_start<F>(service: &str, run: impl FnOnce(tokio::net::TcpListener) -> F)
where
    F: Future<Output = anyhow::Result<()>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(15), run(listener))
        .await
        .unwrap_or_else(|_| panic!("{service} hung with a wrong CA"))
        .expect_err("a wrong CA must stop start-up");
    let chain = format!("{error:#}");
    eprintln!("{service} refused in {:?}: {chain}", started.elapsed());
    assert!(
        chain.contains("certificate") && chain.contains("UnknownIssuer"),
        "{service}: {chain}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{service} took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_stops_each_service_at_start_with_a_certificate_error() {
    let wrong = || async { with_root_cert(&fresh_postgres_tls_url().await, &wrong_tls_ca_file()) };
    let never = std::future::pending::<()>;

    // With the key every service needs, so that what stops each is the certificate.
    let mut config = project_service::Config::with_database_url(wrong().await);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    refuses_to_start("project-service", |l| {
        project_service::run(config, l, never())
    })
    .await;

    let mut config = deploy_service::Config::with_database_url(wrong().await);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    refuses_to_start("deploy-service", |l| {
        deploy_service::run(config, l, never())
    })
    .await;

    let mut config = ai_service::Config::new(wrong().await);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    refuses_to_start("ai-service (PostgreSQL)", |l| {
        ai_service::run(config, l, never())
    })
    .await;

    let mut config = ai_service::Config::new(fresh_postgres_tls_url().await);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    config.redis_url = Some(tls_redis(wrong_tls_ca_file()));
    refuses_to_start("ai-service (Redis)", |l| {
        ai_service::run(config, l, never())
    })
    .await;

    let mut config = gateway_config("http://127.0.0.1:1");
    config.database_url = SecretString::from(wrong().await);
    refuses_to_start("gateway", |l| gateway::run(config, l, never())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_limiter_with_a_wrong_ca_refuses_limited_requests_when_failing_closed() {
    let mut stack = Stack::start_with(Db::Sqlite, |config| {
        config.limits = generous_limits();
        config.limits.redis_url = Some(tls_redis(wrong_tls_ca_file()));
        config.limits.redis_failure = RedisFailureMode::Closed;
    })
    .await;
    let started = Instant::now();
    let response = stack
        .gateway
        .get("/api/projects", &unique_user("tls"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    stack.gateway.server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_connections_are_refused_where_tls_is_required() {
    // PostgreSQL: the TLS-only role without encryption is turned away by pg_hba.
    let plain = fresh_postgres_tls_url()
        .await
        .replace("sslmode=verify-full", "sslmode=disable");
    let error = Database::connect(&plain, 1).await.unwrap_err();
    let chain = format!("{error:#}");
    assert!(chain.contains("no encryption"), "{chain}");

    // Redis: plain RESP to the TLS-only port gets no answer but a closed connection, at once.
    let plain = RedisEndpoint::new(redis_tls_url().replace("rediss://", "redis://"));
    let started = Instant::now();
    let client = plain.client().unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("a plain connection to the TLS port must fail, not hang");
    assert!(result.is_err(), "a plain connection was accepted");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // And with the right CA, TLS works on that port.
    let mut conn = tls_redis(tls_ca_file())
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}
