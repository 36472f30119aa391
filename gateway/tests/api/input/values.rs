//! Traversal paths, pagination values and cursors, unknown fields.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_deletes_with_traversal_paths_are_refused() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("traversal");
    let project = gw.create_project(&user, "traversal").await;
    let id = project["id"].as_str().unwrap();
    let auth = format!("Authorization: Bearer {}", token(&user));
    for method in ["GET", "DELETE"] {
        for path in [
            "../../etc/passwd",
            "..%2F..%2Fetc%2Fpasswd",
            "%2e%2e/%2e%2e/etc/passwd",
            "..%5C..%5Cwindows%5Cwin.ini",
            "a%00.txt",
            "/etc/passwd",
        ] {
            let head = format!(
                "{method} /api/projects/{id}/files/{path} HTTP/1.1\r\n{auth}\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            let (status, text) = raw_bytes(gw, head.as_bytes()).await;
            assert!((400..500).contains(&status), "{method} {path}: {text}");
            assert!(
                text.contains("application/problem+json"),
                "{method} {path}: {text}"
            );
            assert!(!text.contains("root:"), "{method} {path}: {text}");
        }
    }
    // A traversal in the project id itself does not reach another route or project.
    let head = format!(
        "GET /api/projects/..%2F..%2Fauth%2Fkeys HTTP/1.1\r\n{auth}\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let (status, text) = raw_bytes(gw, head.as_bytes()).await;
    assert!((400..500).contains(&status), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_values_and_tampered_cursors_are_400_naming_the_parameter() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("cursor");
    for i in 0..3 {
        gw.create_project(&user, &format!("p{i}")).await;
    }
    // Negative, zero, enormous and non-numeric page sizes, on both paginated routes (the deploy
    // route checks before calling deploy-service, which is not running here).
    for route in ["/api/projects", "/api/deployments"] {
        for limit in [
            "-1",
            "-9223372036854775808",
            "0",
            "101",
            "9223372036854775807",
            "1e3",
            "99999999999999999999999",
            "1.5",
            "",
        ] {
            let response = gw
                .get(&format!("{route}?limit={limit}"), &user)
                .send()
                .await
                .unwrap();
            let problem = assert_problem(response, 400).await;
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains("limit"), "{route} limit={limit}: {detail}");
        }
    }
    let page: serde_json::Value = gw
        .get("/api/projects?limit=1", &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = page["nextCursor"].as_str().unwrap().to_string();
    // The cursor works as given...
    let response = gw
        .get(&format!("/api/projects?limit=1&cursor={cursor}"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // ...and every edit of it, or its use by another user, is refused naming `cursor`.
    let mut flipped = cursor.clone().into_bytes();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let truncated = cursor[..cursor.len() - 2].to_string();
    let extended = format!("{cursor}AA");
    for (who, tampered) in [
        (user.clone(), flipped),
        (user.clone(), truncated),
        (user.clone(), extended),
        (user.clone(), "%2E%2E%2F".to_string()),
        (user.clone(), "A".repeat(5000)),
        (unique_user("cursor_thief"), cursor.clone()),
    ] {
        let response = gw
            .get(&format!("/api/projects?limit=1&cursor={tampered}"), &who)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], "cursor", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("nextCursor"), "says what to send: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_naming_them_on_every_body() {
    // The API's documented behaviour: request bodies are closed (`additionalProperties: false`),
    // so a misspelt field is an error rather than silently ignored.
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("unknown");
    let project = gw.create_project(&user, "unknown").await;
    let id = project["id"].as_str().unwrap();
    let cases = [
        (
            "POST",
            "/api/projects".to_string(),
            json!({"name": "x", "nmae": "y"}),
            "nmae",
        ),
        (
            "PATCH",
            format!("/api/projects/{id}"),
            json!({"version": 1, "titel": "y"}),
            "titel",
        ),
        (
            "PUT",
            format!("/api/projects/{id}/files/a.txt"),
            json!({"content": "x", "mode": "0755"}),
            "mode",
        ),
        (
            "POST",
            "/api/auth/keys".to_string(),
            json!({"name": "k", "admin": true}),
            "admin",
        ),
        (
            "POST",
            "/api/ai/generate".to_string(),
            json!({"prompt": "x", "language": "python", "temperature": 2}),
            "temperature",
        ),
        (
            "POST",
            "/api/ai/chat".to_string(),
            json!({"messages": [{"role": "user", "content": "hi", "name": "me"}]}),
            "name",
        ),
        (
            "POST",
            "/api/sandbox/execute".to_string(),
            json!({"language": "python", "code": "print(1)", "privileged": true}),
            "privileged",
        ),
        (
            "POST",
            "/api/deploy".to_string(),
            json!({"projectId": id, "provider": "vercel", "region": "x"}),
            "region",
        ),
    ];
    for (method, path, body, field) in cases {
        let request = match method {
            "POST" => gw.post(&path, &user),
            "PATCH" => gw.patch(&path, &user),
            _ => gw.put(&path, &user),
        };
        let response = request.json(&body).send().await.unwrap();
        let problem = assert_problem(response, 400).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("`{field}`")),
            "{method} {path}: {detail}"
        );
    }
    // Unknown query parameters too.
    for path in ["/api/projects?limit=1&sort=name", "/api/deployments?page=2"] {
        let response = gw.get(path, &user).send().await.unwrap();
        let problem = assert_problem(response, 400).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{problem}"
        );
    }
}
