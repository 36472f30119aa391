//! Cancel, rollback, restart, idempotency and concurrent replicas.

use tonic::Code;

use crate::helpers::{ALICE, Backend, TestApp, expect_code, request, states};
use crate::on_both_databases;

on_both_databases!(
    cancel_mid_build_reaches_canceled,
    netlify_rollback_restores_previous_deploy,
    restart_mid_poll_resumes_and_finishes,
    idempotent_retry_creates_one_deployment,
);

async fn cancel_mid_build_reaches_canceled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.vercel.hold(true);
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    let building = app.wait_for_state(ALICE, &created.id, "building").await;
    let provider_id = building.provider_deployment_id.clone();

    let canceled = app.cancel(ALICE, &created.id).await.expect("cancel");
    assert_eq!(canceled.state, "canceled");
    assert!(canceled.finished_at_ms > 0);
    assert_eq!(
        app.vercel
            .count("PATCH", &format!("/v12/deployments/{provider_id}/cancel")),
        1
    );
    assert_eq!(
        app.vercel.state.lock().unwrap().deployments[&provider_id].state,
        "CANCELED"
    );
    let events = app.watch(ALICE, &created.id).await.unwrap();
    assert_eq!(
        states(&events),
        ["queued", "uploading", "building", "canceled"]
    );

    // Final means final: a second cancel is refused, and nothing more happens.
    let again = expect_code(
        app.cancel(ALICE, &created.id).await,
        Code::FailedPrecondition,
    );
    assert!(again.message().contains("already canceled"), "{again:?}");
}

async fn netlify_rollback_restores_previous_deploy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.site(ALICE).await;
    let first = app.deploy(ALICE, &project, "netlify").await;
    let first = app.finish(ALICE, &first.id).await;
    // Nothing before the first ready deployment.
    expect_code(
        app.rollback(ALICE, &first.id).await,
        Code::FailedPrecondition,
    );

    app.put_file(ALICE, &project, "index.html", b"<h1>v2</h1>")
        .await;
    let second = app.deploy(ALICE, &project, "netlify").await;
    let second = app.finish(ALICE, &second.id).await;
    assert_eq!(second.state, "ready");

    let rollback = app.rollback(ALICE, &second.id).await.expect("rollback");
    assert_eq!(rollback.rollback_of, first.id);
    assert_eq!(rollback.state, "queued");
    let rollback = app.finish(ALICE, &rollback.id).await;
    assert_eq!(rollback.state, "ready", "{rollback:?}");
    assert_eq!(
        rollback.provider_deployment_id,
        first.provider_deployment_id
    );
    assert_eq!(rollback.url, first.url);

    let restores: Vec<_> = app
        .netlify
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/restore"))
        .collect();
    assert_eq!(restores.len(), 1);
    assert!(restores[0].path.contains(&first.provider_deployment_id));
    let state = app.netlify.state.lock().unwrap();
    let site = state.deploys[&first.provider_deployment_id].site_id.clone();
    assert_eq!(
        state.sites[&site].published.as_deref(),
        Some(first.provider_deployment_id.as_str())
    );
}

async fn restart_mid_poll_resumes_and_finishes(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    app.vercel.hold(true);
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    let building = app.wait_for_state(ALICE, &created.id, "building").await;
    let provider_path = format!("/v13/deployments/{}", building.provider_deployment_id);

    app.stop_deploy().await;
    let reads_at_stop = app.vercel.count("GET", &provider_path);
    // Let the provider finish while deploy-service is down.
    app.vercel.hold(false);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        app.vercel.count("GET", &provider_path),
        reads_at_stop,
        "nobody polls while stopped"
    );

    app.start_deploy_again().await;
    let done = app.finish(ALICE, &created.id).await;
    assert_eq!(done.state, "ready", "{done:?}");
    assert!(app.vercel.count("GET", &provider_path) > reads_at_stop);
    // Resumed, not redone: one deployment at the provider.
    assert_eq!(
        app.vercel.count("POST", "/v13/deployments"),
        2,
        "missing_files, then created"
    );
    assert_eq!(app.vercel.state.lock().unwrap().deployments.len(), 1);
}

async fn idempotent_retry_creates_one_deployment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.site(ALICE).await;
    let mut req = request(&project, "railway");
    req.idempotency_key = Some("retry-key-1".to_string());
    let first = app.create(ALICE, req.clone()).await.unwrap();
    let second = app.create(ALICE, req.clone()).await.unwrap();
    assert_eq!(first.id, second.id);
    let done = app.finish(ALICE, &first.id).await;
    assert_eq!(done.state, "ready");
    // A retry after it finished still returns the same deployment.
    assert_eq!(app.create(ALICE, req.clone()).await.unwrap().id, first.id);

    let listed = app
        .list(
            ALICE,
            autocrea_proto::deploy::v1::ListDeploymentsRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.deployments.len(), 1);
    assert_eq!(app.railway.state.lock().unwrap().deployments.len(), 1);

    // The same key for a different request is a conflict, not a silent reuse.
    req.target = Some("preview".to_string());
    expect_code(app.create(ALICE, req).await, Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vercel_rollback_redeploys_previous() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // A team connection: every call carries its teamId.
    app.put_connection(
        ALICE,
        autocrea_proto::deploy::v1::PutConnectionRequest {
            provider: "vercel".into(),
            token: crate::fake_vercel::TOKEN.into(),
            team_id: Some("team_1".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    app.vercel.clear_requests();
    let project = app.site(ALICE).await;
    let first = app.deploy(ALICE, &project, "vercel").await;
    let first = app.finish(ALICE, &first.id).await;
    let second = app.deploy(ALICE, &project, "vercel").await;
    let second = app.finish(ALICE, &second.id).await;
    let rollback = app.rollback(ALICE, &second.id).await.unwrap();
    let rollback = app.finish(ALICE, &rollback.id).await;
    assert_eq!(rollback.state, "ready");
    let redeploy = app
        .vercel
        .requests()
        .into_iter()
        .rfind(|r| r.method == "POST" && r.path == "/v13/deployments")
        .unwrap();
    assert_eq!(
        redeploy.json()["deploymentId"],
        first.provider_deployment_id
    );
    assert_ne!(
        rollback.provider_deployment_id,
        first.provider_deployment_id
    );
    assert!(
        app.vercel
            .requests()
            .iter()
            .all(|r| r.query.contains("teamId=team_1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn railway_cancel_and_rollback() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    let first = app.deploy(ALICE, &project, "railway").await;
    let first = app.finish(ALICE, &first.id).await;

    app.railway.hold(true);
    let second = app.deploy(ALICE, &project, "railway").await;
    app.wait_for_state(ALICE, &second.id, "building").await;
    let canceled = app.cancel(ALICE, &second.id).await.unwrap();
    assert_eq!(canceled.state, "canceled");
    app.railway.hold(false);

    let rollback = app.rollback(ALICE, &second.id).await.unwrap();
    assert_eq!(rollback.rollback_of, first.id);
    let rollback = app.finish(ALICE, &rollback.id).await;
    assert_eq!(rollback.state, "ready", "{rollback:?}");
    {
        let state = app.railway.state.lock().unwrap();
        assert_eq!(
            state.rollbacks,
            std::slice::from_ref(&first.provider_deployment_id)
        );
        // The rollback's own deployment is followed, not the one rolled back to.
        assert_ne!(
            rollback.provider_deployment_id,
            first.provider_deployment_id
        );
        assert_eq!(
            state.deployments[&rollback.provider_deployment_id].status,
            "SUCCESS"
        );
    }
    assert!(!app.railway.operations("canRollback").is_empty());
    assert_eq!(app.railway.operations("deploymentCancel").len(), 1);
}

/// Two replicas on one PostgreSQL database: every deployment is sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_each_deployment_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    // A second deploy-service on the same database and fakes.
    let mut config = app.config.clone();
    config.replica_id = "second-replica".to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(deploy_service::run(config, listener, async {
        let _ = stopped.await;
    }));

    let project = app.site(ALICE).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(app.deploy(ALICE, &project, "railway").await.id);
    }
    for id in &ids {
        assert_eq!(app.finish(ALICE, id).await.state, "ready");
    }
    {
        let state = app.railway.state.lock().unwrap();
        assert_eq!(state.uploads.len(), 8, "each deployment uploaded once");
        let service = &state.uploads[0].service;
        assert!(
            state.uploads.iter().all(|u| &u.service == service),
            "every deployment of the project went to its one service"
        );
    }
    let _ = stop.send(());
    second.await.unwrap().unwrap();
}

/// A step that outlasts the lease keeps it: a second replica does not send the deployment again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_upload_keeps_its_lease_against_another_replica() {
    let app = TestApp::spawn_with(Backend::Postgres, |config| {
        // Renewed every third of it: a renewal must be over 600 ms late to lose the lease, a
        // margin a loaded test machine keeps.
        config.poller.lease = std::time::Duration::from_millis(900);
    })
    .await;
    let mut config = app.config.clone();
    config.replica_id = "second-replica".to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(deploy_service::run(config, listener, async {
        let _ = stopped.await;
    }));

    // Each upload takes longer than the whole lease.
    app.netlify.slow(
        "PUT",
        "/api/v1/deploys/",
        std::time::Duration::from_millis(700),
    );
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "netlify").await;
    assert_eq!(app.finish(ALICE, &created.id).await.state, "ready");
    let deploys = app
        .netlify
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/deploys"))
        .count();
    assert_eq!(deploys, 1, "sent once");
    assert_eq!(app.netlify.count("PUT", "/api/v1/deploys/"), 3);
    let _ = stop.send(());
    second.await.unwrap().unwrap();
}
