//! Ownership, validation, listing and event streams.

use std::collections::HashMap;

use autocrea_proto::deploy::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{ALICE, BOB, Backend, TestApp, expect_code, request};
use crate::on_both_databases;

on_both_databases!(
    another_users_deployment_is_not_found,
    list_pages_newest_first
);

async fn another_users_deployment_is_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "railway").await;
    app.finish(ALICE, &created.id).await;

    expect_code(app.get(BOB, &created.id).await, Code::NotFound);
    expect_code(app.cancel(BOB, &created.id).await, Code::NotFound);
    expect_code(app.rollback(BOB, &created.id).await, Code::NotFound);
    expect_code(app.watch(BOB, &created.id).await, Code::NotFound);
    // Bob cannot deploy Alice's project either.
    expect_code(
        app.create(BOB, request(&project, "railway")).await,
        Code::NotFound,
    );
    let listed = app
        .list(BOB, pb::ListDeploymentsRequest::default())
        .await
        .unwrap();
    assert!(listed.deployments.is_empty());
    // Unknown and malformed ids are simply not found.
    expect_code(
        app.get(ALICE, &uuid::Uuid::now_v7().to_string()).await,
        Code::NotFound,
    );
    expect_code(app.get(ALICE, "nope").await, Code::NotFound);
}

async fn list_pages_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.site(ALICE).await;
    let other = app.site(ALICE).await;
    let mut ids = Vec::new();
    for p in [&project, &project, &other] {
        let d = app.deploy(ALICE, p, "railway").await;
        app.finish(ALICE, &d.id).await;
        ids.push(d.id);
    }
    let first = app
        .list(
            ALICE,
            pb::ListDeploymentsRequest {
                page_size: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first
            .deployments
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        [ids[2].as_str(), ids[1].as_str()]
    );
    assert!(!first.next_page_token.is_empty());
    let second = app
        .list(
            ALICE,
            pb::ListDeploymentsRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.deployments.len(), 1);
    assert_eq!(second.deployments[0].id, ids[0]);
    assert!(second.next_page_token.is_empty());

    let of_project = app
        .list(
            ALICE,
            pb::ListDeploymentsRequest {
                project_id: Some(project.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(of_project.deployments.len(), 2);
    assert!(
        of_project
            .deployments
            .iter()
            .all(|d| d.project_id == project)
    );
    // A token does not carry over to another user.
    let status = expect_code(
        app.list(
            BOB,
            pb::ListDeploymentsRequest {
                page_token: first.next_page_token,
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "pageToken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_name_the_field() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    let cases: Vec<(pb::CreateDeploymentRequest, &str)> = vec![
        (request("", "vercel"), "projectId"),
        (request("not-a-uuid", "vercel"), "projectId"),
        (request(&project, "heroku"), "provider"),
        (request(&project, ""), "provider"),
        (
            pb::CreateDeploymentRequest {
                target: Some("staging".into()),
                ..request(&project, "vercel")
            },
            "target",
        ),
        (
            pb::CreateDeploymentRequest {
                env: HashMap::from([("1BAD".to_string(), "x".to_string())]),
                ..request(&project, "vercel")
            },
            "env",
        ),
        (
            pb::CreateDeploymentRequest {
                env: HashMap::from([("A".to_string(), "x".to_string())]),
                ..request(&project, "netlify")
            },
            "env",
        ),
        (
            pb::CreateDeploymentRequest {
                idempotency_key: Some("has space".into()),
                ..request(&project, "vercel")
            },
            "idempotencyKey",
        ),
    ];
    for (req, field) in cases {
        let status = expect_code(app.create(ALICE, req.clone()).await, Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("field violations");
        assert_eq!(bad.field_violations[0].field, field, "{req:?}");
    }
    // Without caller identity nothing is answered.
    let status = app
        .client()
        .create_deployment(tonic::Request::new(request(&project, "vercel")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(app.vercel.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_final_deployment_replays_and_ends() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    let first = app.watch(ALICE, &created.id).await.unwrap();
    let again = app.watch(ALICE, &created.id).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        again.iter().map(|e| e.sequence).collect::<Vec<_>>()
    );
    assert!(first.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(first.iter().filter(|e| e.r#final).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_project_ends_in_error() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.project_with(ALICE, &[]).await;
    let created = app.deploy(ALICE, &project, "netlify").await;
    let done = app.finish(ALICE, &created.id).await;
    assert_eq!(done.state, "error");
    assert!(done.error.contains("no files"), "{done:?}");
    assert!(app.netlify.requests().is_empty());
}
