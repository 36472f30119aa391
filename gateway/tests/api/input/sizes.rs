//! Huge bodies, deep nesting, huge headers.

use super::*;

async fn huge_bodies_and_deep_nesting(db: Db) {
    let stack = production_limits_stack(db).await;
    let gw = &stack.gateway;
    let user = unique_user("hostile_body");
    let project = gw.create_project(&user, "hostile").await;
    let id = project["id"].as_str().unwrap();
    let auth = format!("Authorization: Bearer {}", token(&user));
    let json = "Content-Type: application/json";

    // 10 MB bodies, declared and chunked, on a create and on a file write: 413 without reading
    // them whole.
    for (target, method) in [
        ("/api/projects".to_string(), "POST"),
        (format!("/api/projects/{id}/files/big.txt"), "PUT"),
    ] {
        for chunked in [false, true] {
            let head = format!("{method} {target} HTTP/1.1\r\n{auth}\r\n{json}");
            let (status, text, elapsed) = send_large(gw, &head, 10 * 1024 * 1024, chunked).await;
            assert_eq!(status, 413, "{method} {target} chunked={chunked}: {text}");
            assert!(text.contains("application/problem+json"), "{text}");
            assert!(problem_detail(&text).contains("5242880 bytes"), "{text}");
            assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        }
    }
    // Just under the limit is a size the gateway accepts (then project-service's own 2 MiB file
    // limit answers, as a 4xx that names it).
    let head = format!("PUT /api/projects/{id}/files/big.txt HTTP/1.1\r\n{auth}\r\n{json}");
    let (status, text, _) = send_large(gw, &head, 5 * 1024 * 1024 - 64, false).await;
    assert!((400..500).contains(&status), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");

    // Deeply nested JSON, in a field and as the whole body.
    let deep = 100_000;
    let nested_field = format!(
        "{{\"name\":\"deep\",\"description\":{}{}}}",
        "[".repeat(deep),
        "]".repeat(deep)
    );
    let nested_body = format!("{}{}", "{\"a\":".repeat(deep), "}".repeat(deep));
    for body in [nested_field, nested_body] {
        let response = gw
            .post("/api/projects", &user)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("recursion limit") || detail.contains("expected"),
            "{detail}"
        );
    }

    // Invalid UTF-8: in a JSON body, percent-encoded in the path and the query, raw in a header.
    let response = gw
        .post("/api/projects", &user)
        .header("content-type", "application/json")
        .body(b"{\"name\":\"bad \xff\xfe text\"}".to_vec())
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("JSON"),
        "{problem}"
    );
    for target in [
        "/api/projects/%FF%FE".to_string(),
        format!("/api/projects/{id}/files/bad%FF.txt"),
        "/api/projects?cursor=%FF%FE".to_string(),
    ] {
        let head = format!(
            "GET {target} HTTP/1.1\r\n{auth}\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let (status, text) = raw_bytes(gw, head.as_bytes()).await;
        assert!((400..500).contains(&status), "{target}: {text}");
        assert!(
            text.contains("application/problem+json"),
            "{target}: {text}"
        );
    }
    let mut request = b"GET /api/projects HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".to_vec();
    let (status, text) = raw_bytes(gw, &request).await;
    assert_eq!(status, 401, "{text}");
    // Raw non-UTF-8 bytes in the request line are refused by the HTTP parser itself.
    request =
        b"GET /api/pro\xffjects HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec();
    let (status, text) = raw_bytes(gw, &request).await;
    assert!((400..500).contains(&status), "{text}");

    // NUL bytes in every text field of a project, in create and in update; none reaches the
    // database (PostgreSQL cannot store NUL in text).
    for (field, value) in [
        ("name", "nul\u{0}name"),
        ("description", "nul\u{0}description"),
        ("language", "py\u{0}thon"),
        ("framework", "dj\u{0}ango"),
    ] {
        let mut body = json!({"name": "ok"});
        body[field] = json!(value);
        let response = gw
            .post("/api/projects", &user)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        let response = gw
            .patch(&format!("/api/projects/{id}"), &user)
            .json(&json!({"version": project["version"], field: value}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // NUL in file content is data, kept byte for byte.
    let response = gw
        .put(&format!("/api/projects/{id}/files/nul.bin"), &user)
        .json(&json!({"content": "a\u{0}b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let file: serde_json::Value = gw
        .get(&format!("/api/projects/{id}/files/nul.bin"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(file["content"], "a\u{0}b");
    // NUL in an API key's name, and in the query.
    let response = gw
        .post("/api/auth/keys", &user)
        .json(&json!({"name": "k\u{0}ey"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["errors"][0]["field"], "name");
    let response = gw
        .get("/api/projects?cursor=%00", &user)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
}
on_both_databases!(
    huge_bodies_deep_nesting_invalid_utf8_and_nul,
    huge_bodies_and_deep_nesting
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_are_refused_without_hanging() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("hostile_headers");
    let auth = format!("Authorization: Bearer {}", token(&user));
    // One enormous header, very many headers, an enormous request line, an enormous token.
    let one_huge = format!("X-Padding: {}", "a".repeat(256 * 1024));
    let many = (0..500)
        .map(|i| format!("X-H{i}: v"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let long_target = format!("/api/projects?cursor={}", "a".repeat(256 * 1024));
    for (what, head) in [
        (
            "one 256 KiB header",
            format!("GET /api/projects HTTP/1.1\r\n{auth}\r\n{one_huge}"),
        ),
        (
            "500 headers",
            format!("GET /api/projects HTTP/1.1\r\n{auth}\r\n{many}"),
        ),
        (
            "a 256 KiB request line",
            format!("GET {long_target} HTTP/1.1\r\n{auth}"),
        ),
    ] {
        let started = Instant::now();
        let request = format!("{head}\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_bytes(gw, request.as_bytes()).await;
        assert!(
            status == 431 || status == 400 || status == 414,
            "{what}: {}",
            &text[..text.len().min(300)]
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
    }
    let response = gw
        .http
        .get(gw.url("/api/projects"))
        .bearer_auth("e".repeat(60 * 1024))
        .send()
        .await
        .unwrap();
    // Past the 16 KiB header budget (MAX_HEADER_BYTES) before any token is looked at.
    assert_problem(response, 431).await;
    let response = gw
        .http
        .get(gw.url("/api/projects"))
        .bearer_auth("e".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    // The gateway still serves.
    let response = gw.get("/api/projects", &user).send().await.unwrap();
    assert_eq!(response.status(), 200);
}
