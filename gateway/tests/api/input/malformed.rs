//! Malformed requests and bad file paths.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_problems() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("input");
    let project = gw.create_project(&user, "inputs").await;
    let id = project["id"].as_str().unwrap();

    // Malformed JSON.
    let response = gw
        .post("/api/projects", &user)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    // Wrong and missing content type.
    let response = gw
        .post("/api/projects", &user)
        .header("content-type", "text/plain")
        .body("{\"name\": \"x\"}")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    let response = gw
        .post("/api/projects", &user)
        .body("{\"name\": \"x\"}")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    // Oversize body (the test gateway allows 256 KiB).
    let big = "x".repeat(300 * 1024);
    let response = gw
        .put(&format!("/api/projects/{id}/files/big.txt"), &user)
        .json(&json!({ "content": big }))
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
    // Wrong types, unknown fields, invalid values with per-field errors.
    let response = gw
        .post("/api/projects", &user)
        .json(&json!({"name": 42}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    let response = gw
        .post("/api/projects", &user)
        .json(&json!({"name": "x", "colour": "red"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("colour"));
    let response = gw
        .post("/api/projects", &user)
        .json(&json!({"name": "  "}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 400).await;
    assert_eq!(body["errors"][0]["field"], "name");
    let response = gw
        .put(&format!("/api/projects/{id}/files/a.bin"), &user)
        .json(&json!({"content": "@@@", "encoding": "base64"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 400).await;
    assert_eq!(body["errors"][0]["field"], "content");
    // PATCH without a version.
    let response = gw
        .patch(&format!("/api/projects/{id}"), &user)
        .json(&json!({"name": "y"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 400).await;
    assert_eq!(body["errors"][0]["field"], "version");
    // Pagination values and tampered cursors.
    for query in [
        "limit=-1",
        "limit=0",
        "limit=100000",
        "limit=abc",
        "limit=99999999999999999999",
        "cursor=not-a-cursor",
        "cursor=AAAA",
        "bogus=1",
    ] {
        let response = gw
            .get(&format!("/api/projects?{query}"), &user)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
    // Unknown routes.
    let response = gw.get("/api/nothing-here", &user).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_paths_are_refused() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("paths");
    let project = gw.create_project(&user, "paths").await;
    let id = project["id"].as_str().unwrap();
    let auth = format!("Authorization: Bearer {}", token(&user));
    let body = br#"{"content":"x"}"#;
    for path in [
        "../../etc/passwd",
        "src/../../secret",
        "%2E%2E/%2E%2E/etc/passwd",
        "a/./b",
        "/etc/passwd",
        "a//b",
        "a%00b",
        "a%5Cb",
        "a%0Ab",
        "d/".repeat(20).trim_end_matches('/'),
        &"x".repeat(600),
    ] {
        let head = format!(
            "PUT /api/projects/{id}/files/{path} HTTP/1.1\r\n{auth}\r\nContent-Type: application/json"
        );
        let (status, text) = raw(gw, &head, body).await;
        assert!((400..500).contains(&status), "{path}: {status}\n{text}");
        assert!(text.contains("application/problem+json"), "{path}: {text}");
    }
    // Nothing was written.
    let list: serde_json::Value = gw
        .get(&format!("/api/projects/{id}/files"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}
