//! Size and count limits, including under concurrent writes.

use tonic::Code;

use crate::helpers::{Backend, TestApp, expect_code, expect_invalid};

both_backends!(
    file_size_limit,
    default_file_size_limit_is_two_mib,
    file_count_limit,
    project_size_limit,
    concurrent_puts_never_exceed_byte_quota,
    concurrent_puts_never_exceed_file_quota,
    messages_larger_than_four_mib,
);

async fn file_size_limit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_file_bytes = 1024).await;
    let project = app.create_project("alice", "Sizes").await;
    app.put_file("alice", &project.id, "max.bin", vec![7; 1024])
        .await
        .expect("a file of exactly the limit");
    let status = expect_invalid(
        app.put_file("alice", &project.id, "over.bin", vec![7; 1025])
            .await,
        "content",
    );
    assert!(status.message().contains("1024"), "{status:?}");
    let stored = app.get_project("alice", &project.id).await.unwrap();
    assert_eq!((stored.file_count, stored.total_size), (1, 1024));
}

async fn default_file_size_limit_is_two_mib(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.create_project("alice", "Big").await;
    let two_mib = 2 * 1024 * 1024;
    app.put_file("alice", &project.id, "big.bin", vec![1; two_mib])
        .await
        .expect("2 MiB is allowed");
    expect_invalid(
        app.put_file("alice", &project.id, "bigger.bin", vec![1; two_mib + 1])
            .await,
        "content",
    );
    let files = app.list_files("alice", &project.id, true).await.unwrap();
    assert_eq!(files[0].content.len(), two_mib);
}

async fn file_count_limit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_files = 3).await;
    let project = app.create_project("alice", "Count").await;
    let id = project.id.as_str();
    for path in ["a", "b", "c"] {
        app.put_file("alice", id, path, "x").await.unwrap();
    }
    let status = expect_code(
        app.put_file("alice", id, "d", "x").await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("3 files"), "{status:?}");
    // Replacing an existing file does not add one.
    assert!(
        !app.put_file("alice", id, "a", "replaced")
            .await
            .unwrap()
            .created
    );
    // Deleting makes room again.
    app.client()
        .delete_file(crate::helpers::as_user(
            "alice",
            autocrea_proto::project::v1::DeleteFileRequest {
                project_id: id.to_string(),
                path: "b".into(),
            },
        ))
        .await
        .unwrap();
    app.put_file("alice", id, "d", "x")
        .await
        .expect("room after delete");
    let stored = app.get_project("alice", id).await.unwrap();
    assert_eq!(stored.file_count, 3);
}

async fn project_size_limit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_project_bytes = 1000).await;
    let project = app.create_project("alice", "Bytes").await;
    let id = project.id.as_str();
    app.put_file("alice", id, "a", vec![0; 600]).await.unwrap();
    app.put_file("alice", id, "b", vec![0; 400]).await.unwrap();
    let status = expect_code(
        app.put_file("alice", id, "c", vec![0; 1]).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("1000 bytes"), "{status:?}");
    // Growing a file past the limit fails; shrinking it works.
    expect_code(
        app.put_file("alice", id, "a", vec![0; 601]).await,
        Code::FailedPrecondition,
    );
    app.put_file("alice", id, "a", vec![0; 500])
        .await
        .expect("shrink");
    app.put_file("alice", id, "c", vec![0; 100])
        .await
        .expect("fits again");
    let stored = app.get_project("alice", id).await.unwrap();
    assert_eq!((stored.file_count, stored.total_size), (3, 1000));
}

/// Many writers racing for the last bytes of the quota: exactly as many win as fit.
async fn concurrent_puts_never_exceed_byte_quota(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_project_bytes = 1000).await;
    let project = app.create_project("alice", "Race").await;
    app.put_file("alice", &project.id, "base", vec![0; 300])
        .await
        .unwrap();

    let results = race(&app, &project.id, 30, 100).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 7, "700 bytes left, 100 each");
    for result in results.into_iter().filter(|r| r.is_err()) {
        expect_code(result, Code::FailedPrecondition);
    }
    assert_consistent(&app, &project.id, 8, 1000).await;
}

async fn concurrent_puts_never_exceed_file_quota(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_files = 5).await;
    let project = app.create_project("alice", "Race").await;

    let results = race(&app, &project.id, 20, 10).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5);
    for result in results.into_iter().filter(|r| r.is_err()) {
        expect_code(result, Code::FailedPrecondition);
    }
    assert_consistent(&app, &project.id, 5, 50).await;
}

/// `writers` concurrent PutFile calls of `size` bytes each, to distinct paths.
async fn race(
    app: &TestApp,
    id: &str,
    writers: usize,
    size: usize,
) -> Vec<Result<(), tonic::Status>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..writers {
        let mut client = app.client();
        let id = id.to_string();
        tasks.spawn(async move {
            client
                .put_file(crate::helpers::as_user(
                    "alice",
                    autocrea_proto::project::v1::PutFileRequest {
                        project_id: id,
                        path: format!("race/{i}.bin"),
                        content: vec![1; size],
                    },
                ))
                .await
                .map(|_| ())
        });
    }
    tasks.join_all().await
}

/// The project's counters agree with its files and with the expected totals.
async fn assert_consistent(app: &TestApp, id: &str, files: i64, bytes: i64) {
    let stored = app.get_project("alice", id).await.unwrap();
    let listed = app.list_files("alice", id, false).await.unwrap();
    assert_eq!(stored.file_count, listed.len() as i64);
    assert_eq!(
        stored.total_size,
        listed.iter().map(|f| f.size).sum::<i64>()
    );
    assert_eq!((stored.file_count, stored.total_size), (files, bytes));
}

/// Messages above tonic's 4 MiB default pass both ways when the limits allow such files.
async fn messages_larger_than_four_mib(backend: Backend) {
    let five_mib = 5 * 1024 * 1024;
    let app = TestApp::spawn_with(backend, |c| c.max_file_bytes = five_mib as u64).await;
    let project = app.create_project("alice", "Large").await;
    let content: Vec<u8> = (0..five_mib).map(|i| (i % 251) as u8).collect();
    app.put_file("alice", &project.id, "a.bin", content.clone())
        .await
        .expect("put 5 MiB");
    app.put_file("alice", &project.id, "b.bin", content.clone())
        .await
        .expect("put another 5 MiB");
    let files = app.list_files("alice", &project.id, true).await.unwrap();
    assert_eq!(files.len(), 2);
    assert!(
        files.iter().all(|f| f.content == content),
        "10 MiB response intact"
    );
}
