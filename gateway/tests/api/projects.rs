use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

async fn crud_and_files(db: Db) {
    let stack = Stack::start(db).await;
    let gw = &stack.gateway;
    let user = unique_user("crud");

    let created = gw.create_project(&user, "My app").await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "My app");
    assert_eq!(created["language"], "typescript");
    assert_eq!(created["version"], 1);
    assert_eq!(created["fileCount"], 0);
    assert!(created["createdAt"].as_str().unwrap().contains('T'));

    let got: Value = gw
        .get(&format!("/api/projects/{id}"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], id.as_str());

    // Update with the right version, then a stale one.
    let updated = gw
        .patch(&format!("/api/projects/{id}"), &user)
        .json(&json!({"version": 1, "description": "A todo list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["description"], "A todo list");
    let stale = gw
        .patch(&format!("/api/projects/{id}"), &user)
        .json(&json!({"version": 1, "name": "Other"}))
        .send()
        .await
        .unwrap();
    assert_problem(stale, 409).await;
    // If-Match works in place of the body's version.
    let by_etag = gw
        .patch(&format!("/api/projects/{id}"), &user)
        .header("if-match", "\"2\"")
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_etag.status(), 200);

    // Files: create, replace, read, list, binary, delete.
    let put = gw
        .put(&format!("/api/projects/{id}/files/src/index.ts"), &user)
        .json(&json!({"content": "console.log('hi')"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let put = gw
        .put(&format!("/api/projects/{id}/files/src/index.ts"), &user)
        .json(&json!({"content": "console.log('hello')"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let file: Value = put.json().await.unwrap();
    assert_eq!(file["size"], 20);
    let binary = gw
        .put(&format!("/api/projects/{id}/files/assets/logo.bin"), &user)
        .json(&json!({"content": "AP8QIA==", "encoding": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), 201);

    let read: Value = gw
        .get(&format!("/api/projects/{id}/files/src/index.ts"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["content"], "console.log('hello')");
    assert_eq!(read["encoding"], "utf8");
    let read_bin: Value = gw
        .get(&format!("/api/projects/{id}/files/assets/logo.bin"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read_bin["encoding"], "base64");
    assert_eq!(read_bin["content"], "AP8QIA==");

    let list: Value = gw
        .get(&format!("/api/projects/{id}/files"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["assets/logo.bin", "src/index.ts"]);
    assert!(list["items"][0].get("content").is_none());

    let project: Value = gw
        .get(&format!("/api/projects/{id}"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(project["fileCount"], 2);
    assert_eq!(project["totalSize"], 24);

    let deleted = gw
        .delete(&format!("/api/projects/{id}/files/assets/logo.bin"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = gw
        .get(&format!("/api/projects/{id}/files/assets/logo.bin"), &user)
        .send()
        .await
        .unwrap();
    assert_problem(gone, 404).await;

    // Deleting the project removes it and its files.
    let deleted = gw
        .delete(&format!("/api/projects/{id}"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = gw
        .get(&format!("/api/projects/{id}"), &user)
        .send()
        .await
        .unwrap();
    assert_problem(gone, 404).await;
    let gone = gw
        .get(&format!("/api/projects/{id}/files/src/index.ts"), &user)
        .send()
        .await
        .unwrap();
    assert_problem(gone, 404).await;
}
on_both_databases!(crud_and_files_work, crud_and_files);

async fn pagination(db: Db) {
    let stack = Stack::start(db).await;
    let gw = &stack.gateway;
    let user = unique_user("pages");
    let other = unique_user("other");
    gw.create_project(&other, "not mine").await;

    use futures::StreamExt;
    let created: Vec<String> = futures::stream::iter(0..250)
        .map(|i| {
            let user = user.clone();
            async move {
                gw.create_project(&user, &format!("p{i}")).await["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        })
        .buffer_unordered(25)
        .collect()
        .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/api/projects?limit=30".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = gw
            .get(&path, &user)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 20, "pagination does not end");
    }
    assert_eq!(seen.len(), 250, "every project exactly once");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 250);
    let expected: HashSet<_> = created.iter().collect();
    assert_eq!(unique, expected);
    assert_eq!(pages, 9);
}
on_both_databases!(cursor_pagination_returns_each_project_once, pagination);

async fn isolation(db: Db) {
    let stack = Stack::start(db).await;
    let gw = &stack.gateway;
    let alice = unique_user("alice");
    let bob = unique_user("bob");
    let project = gw.create_project(&alice, "secret").await;
    let id = project["id"].as_str().unwrap();
    gw.put(&format!("/api/projects/{id}/files/a.txt"), &alice)
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();

    for response in [
        gw.get(&format!("/api/projects/{id}"), &bob)
            .send()
            .await
            .unwrap(),
        gw.get(&format!("/api/projects/{id}/files"), &bob)
            .send()
            .await
            .unwrap(),
        gw.get(&format!("/api/projects/{id}/files/a.txt"), &bob)
            .send()
            .await
            .unwrap(),
        gw.patch(&format!("/api/projects/{id}"), &bob)
            .json(&json!({"version": 1, "name": "mine now"}))
            .send()
            .await
            .unwrap(),
        gw.put(&format!("/api/projects/{id}/files/b.txt"), &bob)
            .json(&json!({"content": "y"}))
            .send()
            .await
            .unwrap(),
        gw.delete(&format!("/api/projects/{id}"), &bob)
            .send()
            .await
            .unwrap(),
    ] {
        assert_problem(response, 404).await;
    }
    let bobs: Value = gw
        .get("/api/projects", &bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["items"].as_array().unwrap().len(), 0);
    // Alice still has everything.
    let still = gw
        .get(&format!("/api/projects/{id}/files/a.txt"), &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
}
on_both_databases!(another_users_project_is_not_found, isolation);

async fn rename(db: Db) {
    let stack = Stack::start(db).await;
    let gw = &stack.gateway;
    let user = unique_user("rename");
    let project = gw.create_project(&user, "renames").await;
    let id = project["id"].as_str().unwrap();
    let files = format!("/api/projects/{id}/files");
    for (path, content) in [("main.py", "print('hi')"), ("util.py", "x = 1")] {
        let put = gw
            .put(&format!("{files}/{path}"), &user)
            .json(&json!({ "content": content }))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
    }

    let moved = gw
        .patch(&format!("{files}/main.py"), &user)
        .json(&json!({ "newPath": "src/app.py" }))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["path"], "src/app.py");
    let read: Value = gw
        .get(&format!("{files}/src/app.py"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["content"], "print('hi')");
    let gone = gw
        .get(&format!("{files}/main.py"), &user)
        .send()
        .await
        .unwrap();
    assert_problem(gone, 404).await;

    let taken = gw
        .patch(&format!("{files}/util.py"), &user)
        .json(&json!({ "newPath": "src/app.py" }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(taken, 409).await;
    assert!(
        body["detail"].as_str().unwrap().contains("src/app.py"),
        "{body}"
    );
    let invalid = gw
        .patch(&format!("{files}/util.py"), &user)
        .json(&json!({ "newPath": "../x.py" }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(invalid, 400).await;
    assert_eq!(body["errors"][0]["field"], "newPath", "{body}");
    let other = gw
        .patch(&format!("{files}/util.py"), &unique_user("other"))
        .json(&json!({ "newPath": "mine.py" }))
        .send()
        .await
        .unwrap();
    assert_problem(other, 404).await;
}

on_both_databases!(a_file_is_renamed_by_patching_its_path, rename);

/// project-service's per-user caps reach the client as 422 problems naming the cap and its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_caps_are_422_naming_the_cap_and_its_value() {
    let project = ProjectService::start_with(Db::Sqlite, |c| {
        c.max_projects_per_user = 1;
        c.max_user_bytes = 10;
    })
    .await;
    let mut config = gateway_config(&project.url());
    config.limits = generous_limits();
    let gw = Gateway::start(config).await;
    let user = unique_user("caps");
    let id = gw.create_project(&user, "only").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let response = gw
        .post("/api/projects", &user)
        .json(&json!({"name": "second"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("maximum of 1 projects")
            && detail.contains("PROJECT_MAX_PROJECTS_PER_USER"),
        "{detail}"
    );

    let response = gw
        .put(&format!("/api/projects/{id}/files/notes.txt"), &user)
        .json(&json!({"content": "eleven char"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("limit of 10 bytes") && detail.contains("PROJECT_MAX_USER_BYTES"),
        "{detail}"
    );
}
