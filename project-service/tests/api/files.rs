//! Files: create, replace, read, list, delete, path validation, deletion with the project.

use autocrea_proto::project::v1 as pb;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::helpers::{Backend, TestApp, as_user, expect_code, expect_invalid};

both_backends!(
    file_crud,
    delete_project_removes_its_files,
    invalid_file_paths_name_the_field,
    a_file_is_renamed_within_its_project,
);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn get_file(
    app: &TestApp,
    user: &str,
    id: &str,
    path: &str,
) -> Result<pb::File, tonic::Status> {
    app.client()
        .get_file(as_user(
            user,
            pb::GetFileRequest {
                project_id: id.to_string(),
                path: path.to_string(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn file_crud(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.create_project("alice", "Files").await;
    let id = project.id.as_str();

    let first = app
        .put_file("alice", id, "src/main.rs", "fn main() {}")
        .await
        .expect("put new file");
    assert!(first.created);
    let file = first.file.expect("file in response");
    assert_eq!(file.path, "src/main.rs");
    assert!(file.content.is_empty(), "put responses carry no content");
    assert_eq!(file.size, 12);
    assert_eq!(file.sha256, sha256_hex(b"fn main() {}"));
    assert_eq!(file.created_at_ms, file.updated_at_ms);

    let binary: Vec<u8> = (0..=255).collect();
    assert!(
        app.put_file("alice", id, "assets/logo.bin", binary.clone())
            .await
            .unwrap()
            .created
    );
    assert!(
        app.put_file("alice", id, "README.md", "# Files")
            .await
            .unwrap()
            .created
    );
    assert!(
        app.put_file("alice", id, "empty", Vec::new())
            .await
            .unwrap()
            .created
    );

    let main_rs = "fn main() { println!(\"hi\"); }";
    let replaced = app
        .put_file("alice", id, "src/main.rs", main_rs)
        .await
        .expect("replace file");
    assert!(!replaced.created);
    let replaced = replaced.file.unwrap();
    assert_eq!(
        replaced.created_at_ms, file.created_at_ms,
        "creation time stays"
    );
    assert!(replaced.updated_at_ms >= file.updated_at_ms);
    assert_eq!(replaced.size, main_rs.len() as i64);

    let got = get_file(&app, "alice", id, "assets/logo.bin")
        .await
        .unwrap();
    assert_eq!(got.content, binary);
    assert_eq!(got.size, 256);
    assert_eq!(got.sha256, sha256_hex(&binary));
    let got = get_file(&app, "alice", id, "src/main.rs").await.unwrap();
    assert_eq!(got.content, main_rs.as_bytes());

    // Ordered by path (byte-wise: upper case before lower case), content only when asked.
    let listed = app.list_files("alice", id, false).await.unwrap();
    let paths: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["README.md", "assets/logo.bin", "empty", "src/main.rs"]
    );
    assert!(listed.iter().all(|f| f.content.is_empty()));
    assert_eq!(listed[1].size, 256);
    assert_eq!(listed[1].sha256, sha256_hex(&binary));
    let with_content = app.list_files("alice", id, true).await.unwrap();
    assert_eq!(with_content[1].content, binary);
    assert_eq!(with_content[0].content, b"# Files");

    let counted = app.get_project("alice", id).await.unwrap();
    assert_eq!(counted.file_count, 4);
    assert_eq!(counted.total_size, main_rs.len() as i64 + 256 + 7);
    assert_eq!(
        counted.version, 1,
        "file writes do not change the project's version"
    );
    assert!(counted.updated_at_ms >= project.updated_at_ms);

    app.client()
        .delete_file(as_user(
            "alice",
            pb::DeleteFileRequest {
                project_id: id.to_string(),
                path: "assets/logo.bin".into(),
            },
        ))
        .await
        .expect("delete file");
    expect_code(
        get_file(&app, "alice", id, "assets/logo.bin").await,
        Code::NotFound,
    );
    expect_code(
        app.client()
            .delete_file(as_user(
                "alice",
                pb::DeleteFileRequest {
                    project_id: id.to_string(),
                    path: "assets/logo.bin".into(),
                },
            ))
            .await,
        Code::NotFound,
    );
    let counted = app.get_project("alice", id).await.unwrap();
    assert_eq!(
        (counted.file_count, counted.total_size),
        (3, main_rs.len() as i64 + 7)
    );
    expect_code(
        get_file(&app, "alice", id, "never/written").await,
        Code::NotFound,
    );
}

async fn delete_project_removes_its_files(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doomed = app.create_project("alice", "Doomed").await;
    let kept = app.create_project("alice", "Kept").await;
    for path in ["a.txt", "b/c.txt", "d/e/f.txt"] {
        app.put_file("alice", &doomed.id, path, path).await.unwrap();
    }
    app.put_file("alice", &kept.id, "a.txt", "stays")
        .await
        .unwrap();
    assert_eq!(app.count_rows("files", "project_id", &doomed.id).await, 3);

    app.client()
        .delete_project(as_user(
            "alice",
            pb::DeleteProjectRequest {
                id: doomed.id.clone(),
            },
        ))
        .await
        .expect("delete project");
    expect_code(
        app.list_files("alice", &doomed.id, false).await,
        Code::NotFound,
    );
    expect_code(
        get_file(&app, "alice", &doomed.id, "a.txt").await,
        Code::NotFound,
    );
    expect_code(
        app.put_file("alice", &doomed.id, "a.txt", "x").await,
        Code::NotFound,
    );
    assert_eq!(
        app.count_rows("files", "project_id", &doomed.id).await,
        0,
        "no orphan rows"
    );
    assert_eq!(app.count_rows("projects", "id", &doomed.id).await, 0);

    let kept_files = app.list_files("alice", &kept.id, true).await.unwrap();
    assert_eq!(kept_files.len(), 1);
    assert_eq!(kept_files[0].content, b"stays");
}

async fn invalid_file_paths_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.create_project("alice", "Paths").await;
    let id = project.id.as_str();
    let seventeen = vec!["d"; 17].join("/");
    let too_long = "a".repeat(513);
    let cases = [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../outside",
        "./a",
        "a/./b",
        "a/..",
        "a//b",
        "a/",
        "a\\b",
        "C:\\windows",
        "a\0b",
        "a\nb",
        "a\u{7f}b",
        seventeen.as_str(),
        too_long.as_str(),
    ];
    for path in cases {
        let status = expect_invalid(app.put_file("alice", id, path, "x").await, "path");
        assert!(status.message().contains("path"), "{path:?}: {status:?}");
        expect_invalid(get_file(&app, "alice", id, path).await, "path");
        expect_invalid(
            app.client()
                .delete_file(as_user(
                    "alice",
                    pb::DeleteFileRequest {
                        project_id: id.to_string(),
                        path: path.to_string(),
                    },
                ))
                .await,
            "path",
        );
    }
    // The limits themselves are allowed.
    let sixteen = vec!["d"; 16].join("/");
    let longest = "a".repeat(512);
    for path in [sixteen.as_str(), longest.as_str(), ".env", "a..b/c"] {
        assert!(
            app.put_file("alice", id, path, "x").await.unwrap().created,
            "{path:?}"
        );
    }
    assert_eq!(app.list_files("alice", id, false).await.unwrap().len(), 4);
}

async fn move_file(
    app: &TestApp,
    user: &str,
    id: &str,
    path: &str,
    new_path: &str,
) -> Result<pb::File, tonic::Status> {
    app.client()
        .move_file(as_user(
            user,
            pb::MoveFileRequest {
                project_id: id.to_string(),
                path: path.to_string(),
                new_path: new_path.to_string(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn a_file_is_renamed_within_its_project(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.create_project("alice", "Renames").await;
    let id = project.id.as_str();
    app.put_file("alice", id, "main.py", "print('hi')")
        .await
        .unwrap();
    app.put_file("alice", id, "util.py", "x = 1").await.unwrap();
    let before = get_file(&app, "alice", id, "main.py").await.unwrap();

    let moved = move_file(&app, "alice", id, "main.py", "src/app.py")
        .await
        .expect("rename");
    assert_eq!(moved.path, "src/app.py");
    assert!(moved.content.is_empty(), "no content in the answer");
    assert_eq!(moved.sha256, before.sha256);
    assert_eq!(moved.created_at_ms, before.created_at_ms);
    let read = get_file(&app, "alice", id, "src/app.py").await.unwrap();
    assert_eq!(read.content, b"print('hi')");
    expect_code(get_file(&app, "alice", id, "main.py").await, Code::NotFound);
    // Size and count are unchanged.
    let after = app.get_project("alice", id).await.unwrap();
    assert_eq!(after.file_count, 2);
    assert_eq!(after.total_size, project_size(&["print('hi')", "x = 1"]));

    // A taken path, a missing file, another user's project, an invalid new path.
    let taken = expect_code(
        move_file(&app, "alice", id, "util.py", "src/app.py").await,
        Code::AlreadyExists,
    );
    assert!(taken.message().contains("src/app.py"), "{taken:?}");
    expect_code(
        move_file(&app, "alice", id, "nope.py", "other.py").await,
        Code::NotFound,
    );
    expect_code(
        move_file(&app, "bob", id, "util.py", "mine.py").await,
        Code::NotFound,
    );
    expect_invalid(
        move_file(&app, "alice", id, "util.py", "../escape.py").await,
        "newPath",
    );
    expect_invalid(move_file(&app, "alice", id, "a//b", "ok.py").await, "path");
    // Renaming to itself changes nothing.
    let same = move_file(&app, "alice", id, "util.py", "util.py")
        .await
        .unwrap();
    assert_eq!(same.path, "util.py");
    assert_eq!(
        get_file(&app, "alice", id, "util.py")
            .await
            .unwrap()
            .content,
        b"x = 1"
    );
}

fn project_size(contents: &[&str]) -> i64 {
    contents.iter().map(|c| c.len() as i64).sum()
}
