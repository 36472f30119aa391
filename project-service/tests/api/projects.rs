//! Project CRUD, optimistic concurrency, validation, identity and health.

use autocrea_proto::project::v1 as pb;
use tonic::{Code, Request};

use crate::helpers::{Backend, TestApp, as_user, expect_code, expect_invalid};

both_backends!(
    crud,
    stale_update_is_aborted,
    invalid_project_fields_name_the_field,
    missing_caller_is_unauthenticated,
    health_reports_serving,
);

async fn crud(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut client = app.client();

    let created = client
        .create_project(as_user(
            "alice",
            pb::CreateProjectRequest {
                name: "  Todo app  ".into(),
                description: "A list\nof things".into(),
                language: "TypeScript".into(),
                framework: "next.js".into(),
            },
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        uuid::Uuid::parse_str(&created.id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(created.owner_id, "alice");
    assert_eq!(created.name, "Todo app", "name is trimmed");
    assert_eq!(created.description, "A list\nof things");
    assert_eq!(created.language, "TypeScript");
    assert_eq!(created.framework, "next.js");
    assert_eq!(created.version, 1);
    assert_eq!((created.file_count, created.total_size), (0, 0));
    assert!(created.created_at_ms > 1_600_000_000_000);
    assert_eq!(created.created_at_ms, created.updated_at_ms);

    assert_eq!(
        app.get_project("alice", &created.id).await.unwrap(),
        created
    );

    let updated = client
        .update_project(as_user(
            "alice",
            pb::UpdateProjectRequest {
                id: created.id.clone(),
                expected_version: 1,
                name: Some("Todo app v2".into()),
                framework: Some(String::new()),
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.name, "Todo app v2");
    assert_eq!(updated.framework, "", "an empty value clears the field");
    assert_eq!(
        updated.description, created.description,
        "unset fields stay"
    );
    assert_eq!(updated.language, created.language);
    assert_eq!(updated.created_at_ms, created.created_at_ms);
    assert!(updated.updated_at_ms >= created.updated_at_ms);
    assert_eq!(
        app.get_project("alice", &created.id).await.unwrap(),
        updated
    );

    client
        .delete_project(as_user(
            "alice",
            pb::DeleteProjectRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("delete");
    expect_code(app.get_project("alice", &created.id).await, Code::NotFound);
    expect_code(
        client
            .delete_project(as_user(
                "alice",
                pb::DeleteProjectRequest {
                    id: created.id.clone(),
                },
            ))
            .await,
        Code::NotFound,
    );
    // Ids that are not UUIDs name nothing.
    expect_code(app.get_project("alice", "not-a-uuid").await, Code::NotFound);
}

async fn stale_update_is_aborted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.create_project("alice", "Racy").await;
    let update = |name: &str| {
        as_user(
            "alice",
            pb::UpdateProjectRequest {
                id: project.id.clone(),
                expected_version: 1,
                name: Some(name.to_string()),
                ..Default::default()
            },
        )
    };
    let first = app
        .client()
        .update_project(update("First"))
        .await
        .expect("first update");
    assert_eq!(first.into_inner().version, 2);

    let status = expect_code(
        app.client().update_project(update("Second")).await,
        Code::Aborted,
    );
    assert!(
        status
            .message()
            .contains("version conflict: expected 1, current 2"),
        "{status:?}"
    );
    let stored = app.get_project("alice", &project.id).await.unwrap();
    assert_eq!((stored.name.as_str(), stored.version), ("First", 2));

    // Racing updates from the same version: exactly one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut client = app.client();
        let id = project.id.clone();
        tasks.spawn(async move {
            client
                .update_project(as_user(
                    "alice",
                    pb::UpdateProjectRequest {
                        id,
                        expected_version: 2,
                        description: Some(format!("writer {i}")),
                        ..Default::default()
                    },
                ))
                .await
        });
    }
    let results = tasks.join_all().await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for result in results.into_iter().filter(|r| r.is_err()) {
        expect_code(result, Code::Aborted);
    }
    assert_eq!(
        app.get_project("alice", &project.id).await.unwrap().version,
        3
    );
}

async fn invalid_project_fields_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let create = |name: &str, description: &str, language: &str, framework: &str| {
        as_user(
            "alice",
            pb::CreateProjectRequest {
                name: name.into(),
                description: description.into(),
                language: language.into(),
                framework: framework.into(),
            },
        )
    };
    let mut client = app.client();
    expect_invalid(client.create_project(create("", "", "", "")).await, "name");
    expect_invalid(
        client.create_project(create("   ", "", "", "")).await,
        "name",
    );
    expect_invalid(
        client
            .create_project(create(&"n".repeat(101), "", "", ""))
            .await,
        "name",
    );
    expect_invalid(
        client.create_project(create("a\tb", "", "", "")).await,
        "name",
    );
    expect_invalid(
        client
            .create_project(create("ok", &"d".repeat(2001), "", ""))
            .await,
        "description",
    );
    expect_invalid(
        client.create_project(create("ok", "", "Rust!", "")).await,
        "language",
    );
    expect_invalid(
        client
            .create_project(create("ok", "", "", &"f".repeat(51)))
            .await,
        "framework",
    );
    let status = expect_invalid(client.create_project(create("", "", "", "")).await, "name");
    assert!(status.message().contains("name"), "{status:?}");

    let project = app.create_project("alice", "Valid").await;
    let update = |expected_version: i64, name: Option<&str>| {
        as_user(
            "alice",
            pb::UpdateProjectRequest {
                id: project.id.clone(),
                expected_version,
                name: name.map(str::to_string),
                ..Default::default()
            },
        )
    };
    expect_invalid(
        client.update_project(update(0, Some("x"))).await,
        "expectedVersion",
    );
    expect_invalid(client.update_project(update(1, Some(""))).await, "name");
    // Nothing invalid was stored.
    assert_eq!(
        app.get_project("alice", &project.id).await.unwrap(),
        project
    );
}

async fn missing_caller_is_unauthenticated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.create_project("alice", "Mine").await;
    let mut client = app.client();
    expect_code(
        client
            .create_project(Request::new(pb::CreateProjectRequest {
                name: "x".into(),
                ..Default::default()
            }))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .get_project(Request::new(pb::GetProjectRequest {
                id: project.id.clone(),
            }))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .list_projects(Request::new(pb::ListProjectsRequest::default()))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .put_file(Request::new(pb::PutFileRequest {
                project_id: project.id.clone(),
                path: "a.txt".into(),
                content: b"x".to_vec(),
            }))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .list_files(Request::new(pb::ListFilesRequest {
                project_id: project.id.clone(),
                include_content: false,
            }))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .delete_project(Request::new(pb::DeleteProjectRequest {
                id: project.id.clone(),
            }))
            .await,
        Code::Unauthenticated,
    );
    assert!(app.get_project("alice", &project.id).await.is_ok());
}

async fn health_reports_serving(backend: Backend) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let app = TestApp::spawn(backend).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    for service in ["", "autocrea.project.v1.ProjectService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
}
