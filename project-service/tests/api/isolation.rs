//! Another user's projects and files are invisible: NOT_FOUND, never PERMISSION_DENIED.

use autocrea_proto::project::v1 as pb;
use tonic::Code;

use crate::helpers::{Backend, TestApp, as_user, expect_code};

both_backends!(other_users_projects_are_invisible);

async fn other_users_projects_are_invisible(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alices = app.create_project("alice", "Alice's").await;
    let bobs = app.create_project("bob", "Bob's").await;
    app.put_file("alice", &alices.id, "secret.txt", "alice only")
        .await
        .expect("put alice's file");
    let mut client = app.client();

    expect_code(app.get_project("bob", &alices.id).await, Code::NotFound);
    expect_code(
        client
            .update_project(as_user(
                "bob",
                pb::UpdateProjectRequest {
                    id: alices.id.clone(),
                    expected_version: 1,
                    name: Some("Mine now".into()),
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        client
            .delete_project(as_user(
                "bob",
                pb::DeleteProjectRequest {
                    id: alices.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        app.put_file("bob", &alices.id, "secret.txt", "overwritten")
            .await,
        Code::NotFound,
    );
    expect_code(
        app.put_file("bob", &alices.id, "new.txt", "planted").await,
        Code::NotFound,
    );
    expect_code(
        client
            .get_file(as_user(
                "bob",
                pb::GetFileRequest {
                    project_id: alices.id.clone(),
                    path: "secret.txt".into(),
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        app.list_files("bob", &alices.id, true).await,
        Code::NotFound,
    );
    expect_code(
        client
            .delete_file(as_user(
                "bob",
                pb::DeleteFileRequest {
                    project_id: alices.id.clone(),
                    path: "secret.txt".into(),
                },
            ))
            .await,
        Code::NotFound,
    );

    // Listings show only the caller's own projects.
    let listed = |user: &'static str| {
        let mut client = app.client();
        async move {
            client
                .list_projects(as_user(user, pb::ListProjectsRequest::default()))
                .await
                .expect("list")
                .into_inner()
                .projects
        }
    };
    assert_eq!(listed("bob").await, vec![bobs.clone()]);
    let alice_sees = listed("alice").await;
    assert_eq!(alice_sees.len(), 1);
    assert_eq!(alice_sees[0].id, alices.id);

    // Nothing bob tried changed alice's project.
    let stored = app.get_project("alice", &alices.id).await.unwrap();
    assert_eq!((stored.name.as_str(), stored.version), ("Alice's", 1));
    assert_eq!(stored.file_count, 1);
    let files = app.list_files("alice", &alices.id, true).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].content, b"alice only");
}
