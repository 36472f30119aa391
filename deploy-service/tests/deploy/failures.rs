//! Failures are handled: missing credentials, provider 5xx and rate limits, unreachable or slow
//! providers, provider refusals.

use std::time::Duration;

use tonic::Code;

use crate::helpers::{ALICE, BOB, Backend, TestApp, expect_code, request, states};
use crate::on_both_databases;

on_both_databases!(unreachable_provider_ends_in_error_with_reason);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_connection_gets_422_naming_the_route_and_nothing_is_sent() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(BOB).await;
    for provider in ["vercel", "netlify", "railway"] {
        let status = expect_code(
            app.create(BOB, request(&project, provider)).await,
            Code::FailedPrecondition,
        );
        assert!(
            status
                .message()
                .contains(&format!("PUT /api/integrations/{provider}")),
            "{status:?}"
        );
    }
    assert!(app.vercel.requests().is_empty());
    assert!(app.netlify.requests().is_empty());
    assert!(app.railway.requests().is_empty());
    let listed = app.list(BOB, Default::default()).await.unwrap();
    assert!(listed.deployments.is_empty(), "nothing recorded");
}

/// The operator's own Vercel and Netlify accounts deploy for users without a connection only
/// when opted in; never Railway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_accounts_are_an_explicit_opt_in() {
    use deploy_service::Config;
    let app = TestApp::spawn_with(Backend::Sqlite, |config: &mut Config| {
        config.platform_accounts = vec![deploy_service_provider("vercel")];
    })
    .await;
    let project = app.site(BOB).await;
    let created = app.deploy(BOB, &project, "vercel").await;
    let done = app.finish(BOB, &created.id).await;
    assert_eq!(done.state, "ready", "{done:?}");
    assert_eq!(done.account, "platform");
    assert!(
        app.vercel
            .requests()
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {}", crate::fake_vercel::TOKEN))
    );
    expect_code(
        app.create(BOB, request(&project, "netlify")).await,
        Code::FailedPrecondition,
    );
}

fn deploy_service_provider(name: &str) -> deploy_service::Provider {
    deploy_service::Provider::parse(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_500_then_success() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.vercel.fail_next("POST", "/v13/deployments", 500);
    app.vercel.fail_next("POST", "/v2/files", 503);
    app.vercel.fail_next("GET", "/v13/deployments/", 502);
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    let done = app.finish(ALICE, &created.id).await;
    assert_eq!(done.state, "ready", "{done:?}");
    assert!(done.error.is_empty());
    // missing_files answer + the 500 + the successful create.
    assert_eq!(app.vercel.count("POST", "/v13/deployments"), 3);
    assert_eq!(
        app.vercel.count("POST", "/v2/files"),
        4,
        "one upload retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_waits_for_reset() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.netlify
        .rate_limit_next("POST", "/api/v1/sites", "x-ratelimit-reset", "1");
    let project = app.site(ALICE).await;
    let started = std::time::Instant::now();
    let created = app.deploy(ALICE, &project, "netlify").await;
    let done = app.finish(ALICE, &created.id).await;
    assert_eq!(done.state, "ready", "{done:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the reset (1 s) was honoured, not the short back-off"
    );
}

async fn unreachable_provider_ends_in_error_with_reason(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    // Vercel goes away after Alice connected her account: a port that was just free, so that
    // nothing listens there (taken as late as possible, so no other test takes it meanwhile).
    app.stop_deploy().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    app.config.vercel.api_url = format!("http://{closed}");
    app.start_deploy_again().await;
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    let events = app.watch(ALICE, &created.id).await.unwrap();
    assert_eq!(states(&events), ["queued", "uploading", "error"]);
    let done = app.get(ALICE, &created.id).await.unwrap();
    assert!(done.error.contains("could not reach Vercel"), "{done:?}");
    assert!(done.error.to_lowercase().contains("connect"), "{done:?}");
    assert!(!done.error.contains(crate::fake_vercel::TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_timeout_ends_in_error_with_reason() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.retry.request_timeout = Duration::from_millis(300);
    })
    .await;
    app.netlify
        .slow("PUT", "/api/v1/deploys/", Duration::from_secs(2));
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "netlify").await;
    let done = app.finish(ALICE, &created.id).await;
    assert_eq!(done.state, "error");
    assert!(
        done.error.contains("could not reach Netlify (upload of"),
        "{done:?}"
    );
    assert!(done.error.contains("timed out"), "{done:?}");
    assert_eq!(
        app.netlify.count("PUT", "/api/v1/deploys/"),
        3,
        "retried, then gave up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_refusal_is_a_clear_error_without_the_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Alice's token is revoked at Vercel after she connected it.
    app.vercel
        .state
        .lock()
        .unwrap()
        .accounts
        .0
        .remove(crate::fake_vercel::TOKEN);
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    let done = app.finish(ALICE, &created.id).await;
    assert_eq!(done.state, "error");
    assert!(
        done.error.contains("Vercel rejected the request"),
        "{done:?}"
    );
    assert!(
        done.error.contains("403") && done.error.contains("Not authorized"),
        "{done:?}"
    );
    assert!(!done.error.contains(crate::fake_vercel::TOKEN));
    // 4xx is not retried.
    assert_eq!(app.vercel.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_build_failure_is_reported() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    app.netlify.hold(true);
    let created = app.deploy(ALICE, &project, "netlify").await;
    let building = app.wait_for_state(ALICE, &created.id, "building").await;
    {
        let mut state = app.netlify.state.lock().unwrap();
        let deploy = state
            .deploys
            .get_mut(&building.provider_deployment_id)
            .unwrap();
        deploy.state = "error";
    }
    let done = app.finish(ALICE, &created.id).await;
    assert_eq!(done.state, "error", "{done:?}");
    assert!(done.error.contains("non-zero exit code"), "{done:?}");
}
