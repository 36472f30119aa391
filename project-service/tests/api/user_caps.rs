//! Per-user caps: how many projects one user may have and how many bytes all of them may hold,
//! counting rows that existed before the caps, and never overshot by concurrent calls.

use autocrea_proto::project::v1 as pb;
use tonic::Code;

use crate::helpers::{Backend, TestApp, as_user, expect_code};

both_backends!(
    project_count_cap,
    byte_cap_over_all_projects,
    existing_rows_count_against_the_caps,
    concurrent_creates_never_exceed_the_project_cap,
    concurrent_puts_in_several_projects_never_exceed_the_byte_cap,
);

async fn create(app: &TestApp, user: &str, name: &str) -> Result<pb::Project, tonic::Status> {
    app.client()
        .create_project(as_user(
            user,
            pb::CreateProjectRequest {
                name: name.to_string(),
                description: String::new(),
                language: String::new(),
                framework: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn delete(app: &TestApp, user: &str, id: &str) {
    app.client()
        .delete_project(as_user(
            user,
            pb::DeleteProjectRequest { id: id.to_string() },
        ))
        .await
        .expect("delete project");
}

async fn project_count_cap(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_projects_per_user = 3).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(create(&app, "alice", &format!("p{n}")).await.unwrap().id);
    }
    let status = expect_code(
        create(&app, "alice", "one too many").await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("maximum of 3 projects")
            && status.message().contains("PROJECT_MAX_PROJECTS_PER_USER"),
        "{status:?}"
    );
    // The cap is per user.
    create(&app, "bob", "bob's").await.expect("bob has room");
    // Deleting makes room again.
    delete(&app, "alice", &ids[0]).await;
    create(&app, "alice", "again")
        .await
        .expect("room after delete");
}

async fn byte_cap_over_all_projects(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_user_bytes = 1000).await;
    let a = app.create_project("alice", "A").await.id;
    let b = app.create_project("alice", "B").await.id;
    app.put_file("alice", &a, "x", vec![0; 600]).await.unwrap();
    app.put_file("alice", &b, "y", vec![0; 400]).await.unwrap();
    let status = expect_code(
        app.put_file("alice", &b, "z", vec![0; 1]).await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("limit of 1000 bytes")
            && status.message().contains("1001 bytes")
            && status.message().contains("PROJECT_MAX_USER_BYTES"),
        "{status:?}"
    );
    // Growing a file past the cap fails; shrinking one makes room in another project.
    expect_code(
        app.put_file("alice", &a, "x", vec![0; 601]).await,
        Code::FailedPrecondition,
    );
    app.put_file("alice", &a, "x", vec![0; 500])
        .await
        .expect("shrink");
    app.put_file("alice", &b, "z", vec![0; 100])
        .await
        .expect("fits again");
    // Deleting a project frees its bytes.
    delete(&app, "alice", &a).await;
    app.put_file("alice", &b, "w", vec![0; 500])
        .await
        .expect("room after deleting a project");
    // The cap is per user.
    let c = app.create_project("bob", "C").await.id;
    app.put_file("bob", &c, "x", vec![0; 1000])
        .await
        .expect("bob has his own bytes");
}

/// Rows written before the caps existed (straight into the database, as an older release left
/// them, with no per-user row) count against them.
async fn existing_rows_count_against_the_caps(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_projects_per_user = 3;
        c.max_user_bytes = 1000;
    })
    .await;
    // Another user's project, which counts for nobody else; answered once the migrations ran.
    create(&app, "bob", "bob's").await.unwrap();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    for (n, size) in [(0, 500_i64), (1, 400)] {
        sqlx::query(
            "INSERT INTO projects (id, owner_id, name, description, language, framework, \
             created_at_ms, updated_at_ms, version, file_count, total_size) \
             VALUES ($1, 'alice', $2, '', '', '', 1, 1, 1, 0, $3)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(format!("old {n}"))
        .bind(size)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let third = create(&app, "alice", "third").await.expect("2 of 3 used");
    let status = expect_code(
        app.put_file("alice", &third.id, "big", vec![0; 101]).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("1001 bytes"), "{status:?}");
    app.put_file("alice", &third.id, "fits", vec![0; 100])
        .await
        .expect("900 of 1000 used");
    expect_code(
        create(&app, "alice", "fourth").await,
        Code::FailedPrecondition,
    );
}

async fn concurrent_creates_never_exceed_the_project_cap(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_projects_per_user = 5).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let app_client = app.client();
        tasks.spawn(async move {
            let mut client = app_client;
            client
                .create_project(as_user(
                    "alice",
                    pb::CreateProjectRequest {
                        name: format!("racer {n}"),
                        description: String::new(),
                        language: String::new(),
                        framework: String::new(),
                    },
                ))
                .await
                .map(|_| ())
        });
    }
    let results = tasks.join_all().await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    for result in results.into_iter().filter(|r| r.is_err()) {
        expect_code(result, Code::FailedPrecondition);
    }
    let listed = app
        .client()
        .list_projects(as_user(
            "alice",
            pb::ListProjectsRequest {
                page_size: 100,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.projects.len(), 5);
}

/// 40 writers, 100 bytes each, spread over four projects, racing for a 1000-byte cap: exactly
/// ten win, and the projects together hold exactly the cap.
async fn concurrent_puts_in_several_projects_never_exceed_the_byte_cap(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_user_bytes = 1000).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(app.create_project("alice", &format!("P{n}")).await.id);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40 {
        let mut client = app.client();
        let id = ids[n % 4].clone();
        tasks.spawn(async move {
            client
                .put_file(as_user(
                    "alice",
                    pb::PutFileRequest {
                        project_id: id,
                        path: format!("race/{n}.bin"),
                        content: vec![1; 100],
                    },
                ))
                .await
                .map(|_| ())
        });
    }
    let results = tasks.join_all().await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    for result in results.into_iter().filter(|r| r.is_err()) {
        expect_code(result, Code::FailedPrecondition);
    }
    let mut total = 0;
    for id in &ids {
        total += app.get_project("alice", id).await.unwrap().total_size;
    }
    assert_eq!(total, 1000);
}
