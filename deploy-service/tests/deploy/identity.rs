//! Who may call deploy-service, and what it may do on the caller's behalf: only calls with an
//! assertion the gateway signed for it; the owner check on project-service forwards that
//! assertion (deploy-service never mints one), and the upload reads the files with the grant
//! that came with the create call, for that project only.

use autocrea_proto::deploy::v1 as pb;
use service_runtime::identity::{ASSERTION_LIFETIME, GRANT, attach, audience};
use service_runtime::testing::{
    as_user, assert_health_open, assertion, files_grant, forged_requests, signing_key,
    with_assertion,
};
use tonic::Code;

use crate::helpers::{ALICE, Backend, TestApp, expect_code, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_assertion_are_refused_and_health_stays_open() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    let mut client = app.client();
    for (what, mut call) in forged_requests(audience::DEPLOY, ALICE, request(&project, "vercel")) {
        // Even with a valid grant beside it.
        attach(&mut call, GRANT, &files_grant(ALICE, &project));
        let status = expect_code(client.create_deployment(call).await, Code::Unauthenticated);
        assert!(!status.message().is_empty(), "{what}");
    }
    let list = pb::ListDeploymentsRequest::default();
    for (what, call) in forged_requests(audience::DEPLOY, ALICE, list) {
        let status = expect_code(client.list_deployments(call).await, Code::Unauthenticated);
        assert!(!status.message().is_empty(), "{what}");
    }
    assert!(app.vercel.requests().is_empty());
    assert_health_open(&format!("http://{}", app.deploy_addr)).await;
    // The gateway's call, forwarded to project-service for the owner check, then the upload with
    // its grant: the deployment goes live.
    let created = app.deploy(ALICE, &project, "vercel").await;
    assert_eq!(app.finish(ALICE, &created.id).await.state, "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_check_forwards_the_assertion_received() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    // Addressed to deploy-service only: deploy-service accepts it, but cannot make
    // project-service accept it, since it forwards what it got and signs nothing itself.
    let only_deploy = assertion(
        signing_key(),
        ALICE,
        &[audience::DEPLOY],
        ASSERTION_LIFETIME,
    );
    let mut call = with_assertion(request(&project, "vercel"), &only_deploy);
    attach(&mut call, GRANT, &files_grant(ALICE, &project));
    let status = expect_code(app.client().create_deployment(call).await, Code::Internal);
    assert!(
        status
            .message()
            .contains("not addressed to project-service"),
        "{status:?}"
    );
    let listed = app
        .list(ALICE, pb::ListDeploymentsRequest::default())
        .await
        .unwrap();
    assert!(listed.deployments.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_reads_only_with_the_grant_for_its_project() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    let other = app.site(ALICE).await;

    // No grant: refused at once, nothing recorded.
    let status = expect_code(
        app.client()
            .create_deployment(as_user(ALICE, request(&project, "vercel")))
            .await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains(GRANT), "{status:?}");

    // A grant for another project: the deployment is accepted, and its upload is refused.
    let mut call = as_user(ALICE, request(&project, "vercel"));
    attach(&mut call, GRANT, &files_grant(ALICE, &other));
    let created = app
        .client()
        .create_deployment(call)
        .await
        .expect("accepted")
        .into_inner();
    let finished = app.finish(ALICE, &created.id).await;
    assert_eq!(finished.state, "error");
    assert!(
        finished.error.contains("refused") && finished.error.contains(&other),
        "{finished:?}"
    );
    assert!(
        app.vercel.requests().is_empty(),
        "nothing reached the provider"
    );
}
