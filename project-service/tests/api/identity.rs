//! Who may call: only a caller whose assertion the gateway signed for project-service, and for
//! a deployment's upload a grant to read exactly one project's files. Health stays open.

use autocrea_proto::project::v1 as pb;
use service_runtime::identity::audience;
use service_runtime::testing::{assert_health_open, files_grant, forged_requests, with_assertion};
use tonic::Code;

use crate::helpers::{Backend, TestApp, as_user, expect_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_assertion_are_refused_and_health_stays_open() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.create_project("alice", "signed").await;
    let mut client = app.client();
    for (what, request) in forged_requests(
        audience::PROJECT,
        "alice",
        pb::GetProjectRequest {
            id: project.id.clone(),
        },
    ) {
        let status = expect_code(client.get_project(request).await, Code::Unauthenticated);
        assert!(!status.message().is_empty(), "{what}");
    }
    for (what, request) in forged_requests(audience::PROJECT, "alice", list_all()) {
        let status = expect_code(client.list_projects(request).await, Code::Unauthenticated);
        assert!(!status.message().is_empty(), "{what}");
    }
    // The gateway's call, signed for every service, goes through.
    assert_eq!(
        app.get_project("alice", &project.id).await.unwrap().id,
        project.id
    );
    assert_health_open(&format!("http://{}", app.addr)).await;
}

fn list_all() -> pb::ListProjectsRequest {
    pb::ListProjectsRequest {
        page_size: 10,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_reads_only_its_projects_files() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let shipped = app.create_project("alice", "shipped").await;
    let other = app.create_project("alice", "other").await;
    for project in [&shipped, &other] {
        app.put_file("alice", &project.id, "index.html", "<h1>hi</h1>")
            .await
            .unwrap();
    }
    let grant = files_grant("alice", &shipped.id);
    let mut client = app.client();
    let list = |id: &str| pb::ListFilesRequest {
        project_id: id.to_string(),
        include_content: true,
    };

    let files = client
        .list_files(with_assertion(list(&shipped.id), &grant))
        .await
        .expect("the grant reads its project's files")
        .into_inner()
        .files;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].content, b"<h1>hi</h1>");

    expect_code(
        client
            .list_files(with_assertion(list(&other.id), &grant))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        client
            .put_file(with_assertion(
                pb::PutFileRequest {
                    project_id: shipped.id.clone(),
                    path: "index.html".into(),
                    content: b"defaced".to_vec(),
                },
                &grant,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        client
            .list_projects(with_assertion(list_all(), &grant))
            .await,
        Code::PermissionDenied,
    );
    // Another user's grant for the same project sees nothing of it.
    expect_code(
        client
            .list_files(with_assertion(
                list(&shipped.id),
                &files_grant("bob", &shipped.id),
            ))
            .await,
        Code::NotFound,
    );
    // Still there, unchanged.
    let again = client
        .list_files(as_user("alice", list(&shipped.id)))
        .await
        .unwrap()
        .into_inner()
        .files;
    assert_eq!(again[0].content, b"<h1>hi</h1>");
}
