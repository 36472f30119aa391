//! ListProjects: order, cursors, page sizes, token integrity.

use std::collections::HashSet;

use autocrea_proto::project::v1 as pb;

use crate::helpers::{Backend, TestApp, as_user, expect_invalid};

both_backends!(
    pages_through_250_projects_exactly_once,
    page_size_bounds,
    tampered_page_token_is_invalid,
);

async fn list(
    app: &TestApp,
    user: &str,
    page_size: i32,
    page_token: &str,
) -> pb::ListProjectsResponse {
    app.client()
        .list_projects(as_user(
            user,
            pb::ListProjectsRequest {
                page_size,
                page_token: page_token.to_string(),
            },
        ))
        .await
        .expect("list projects")
        .into_inner()
}

/// Creates `count` projects for `user`, several at a time so that some share a creation
/// millisecond and the id tie-break is exercised.
async fn create_many(app: &TestApp, user: &str, count: usize) -> Vec<pb::Project> {
    let mut created = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(25) {
        let mut tasks = tokio::task::JoinSet::new();
        for &i in batch {
            let mut client = app.client();
            let user = user.to_string();
            tasks.spawn(async move {
                client
                    .create_project(as_user(
                        &user,
                        pb::CreateProjectRequest {
                            name: format!("Project {i}"),
                            ..Default::default()
                        },
                    ))
                    .await
                    .expect("create project")
                    .into_inner()
            });
        }
        created.extend(tasks.join_all().await);
    }
    created
}

async fn pages_through_250_projects_exactly_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut expected = create_many(&app, "alice", 250).await;
    // Another user's projects interleave in the table but never in alice's listing.
    create_many(&app, "bob", 5).await;
    expected.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.id.cmp(&a.id))
    });

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(&app, "alice", 7, &token).await;
        pages += 1;
        assert!(page.projects.len() <= 7);
        seen.extend(page.projects);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 100, "pagination does not terminate");
    }
    assert_eq!(pages, 36, "250 projects at 7 per page");
    let ids: Vec<&str> = seen.iter().map(|p| p.id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 250, "every project exactly once");
    let expected_ids: Vec<&str> = expected.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, expected_ids, "newest first, ties by id descending");
    assert!(seen.iter().all(|p| p.owner_id == "alice"));

    // Creating a project while paging does not disturb later pages (the cursor is a position,
    // not an offset).
    let first = list(&app, "alice", 7, "").await;
    app.create_project("alice", "Newest").await;
    let second = list(&app, "alice", 7, &first.next_page_token).await;
    let second_ids: Vec<&str> = second.projects.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(second_ids, expected_ids[7..14]);
}

async fn page_size_bounds(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert!(list(&app, "alice", 0, "").await.projects.is_empty());
    create_many(&app, "alice", 105).await;

    let default = list(&app, "alice", 0, "").await;
    assert_eq!(default.projects.len(), 20, "0 means the default of 20");
    assert!(!default.next_page_token.is_empty());

    let clamped = list(&app, "alice", 1000, "").await;
    assert_eq!(clamped.projects.len(), 100, "clamped to 100");
    let rest = list(&app, "alice", 1000, &clamped.next_page_token).await;
    assert_eq!(rest.projects.len(), 5);
    assert!(rest.next_page_token.is_empty(), "last page has no token");

    let exact = list(&app, "alice", 105, "").await;
    assert_eq!(exact.projects.len(), 100);

    let status = expect_invalid(
        app.client()
            .list_projects(as_user(
                "alice",
                pb::ListProjectsRequest {
                    page_size: -1,
                    page_token: String::new(),
                },
            ))
            .await,
        "pageSize",
    );
    assert!(status.message().contains("negative"), "{status:?}");
}

async fn tampered_page_token_is_invalid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create_many(&app, "alice", 3).await;
    let token = list(&app, "alice", 1, "").await.next_page_token;
    assert!(!token.is_empty());
    // The genuine token works.
    assert_eq!(list(&app, "alice", 1, &token).await.projects.len(), 1);

    let mut flipped = token.clone().into_bytes();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();

    for bad in [
        "garbage",
        "!!!not base64!!!",
        flipped.as_str(),
        &token[..token.len() - 2],
        &format!("{token}AA"),
    ] {
        expect_invalid(
            app.client()
                .list_projects(as_user(
                    "alice",
                    pb::ListProjectsRequest {
                        page_size: 1,
                        page_token: bad.to_string(),
                    },
                ))
                .await,
            "pageToken",
        );
    }
    // Another user cannot reuse alice's token.
    expect_invalid(
        app.client()
            .list_projects(as_user(
                "bob",
                pb::ListProjectsRequest {
                    page_size: 1,
                    page_token: token,
                },
            ))
            .await,
        "pageToken",
    );
}
