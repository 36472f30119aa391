//! Bad input gets a clear 4xx problem+json, never a 5xx.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::on_both_databases;

/// Sends `head` (request line and headers, without the final blank line) byte for byte, so that
/// paths reach the gateway exactly as written (no client-side normalisation of `..`).
async fn raw(gw: &Gateway, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(gw.server.addr)
        .await
        .unwrap();
    let mut request = format!(
        "{head}\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

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

/// A stack with the production body limit (5 MiB), so that "10 MB" means what it says.
async fn production_limits_stack(db: Db) -> Stack {
    let default_limit = gateway::Config::new(gateway::config::AuthConfig::default()).max_body_bytes;
    Stack::start_with(db, |c| {
        c.limits = generous_limits();
        c.max_body_bytes = default_limit;
    })
    .await
}

/// Sends `head` with a body of `size` bytes (a JSON object holding one long string), declared
/// with `Content-Length` or sent chunked, writing while reading: the gateway may answer before it
/// has read the body, and must not wait for all of it. Returns the status, the response text and
/// how long the answer took.
async fn send_large(
    gw: &Gateway,
    head: &str,
    size: usize,
    chunked: bool,
) -> (u16, String, Duration) {
    let stream = tokio::net::TcpStream::connect(gw.server.addr)
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    let head = format!("{head}\r\nHost: localhost\r\nConnection: close\r\n{framing}\r\n\r\n");
    let started = Instant::now();
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let open = b"{\"content\":\"";
        let close = b"\"}";
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(open);
        body.resize(size - close.len(), b'x');
        body.extend_from_slice(close);
        for piece in body.chunks(64 * 1024) {
            if chunked {
                writer
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                writer.write_all(piece).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(piece).await?;
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        // Kept open: dropping it would half-close the connection, which the gateway takes for
        // a client that went away.
        Ok::<_, std::io::Error>(writer)
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        // A reset after the answer (the gateway closing on the unread rest) ends the reading.
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(e) => return Some(e),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 20 s to {size} bytes");
    let elapsed = started.elapsed();
    let written = tokio::time::timeout(Duration::from_secs(5), write).await;
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(
        text.len() >= 12,
        "no status line: {text:?}; read error {:?}, write {:?}",
        read.unwrap(),
        written.map(|w| w.map(|w| w.map(|_| ())))
    );
    (text[9..12].parse().unwrap(), text, elapsed)
}

/// Sends raw bytes (a whole request) and returns the status and the response text.
async fn raw_bytes(gw: &Gateway, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(gw.server.addr)
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(text.len() >= 12, "no status line: {text:?}");
    (text[9..12].parse().unwrap(), text)
}

fn problem_detail(text: &str) -> String {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_default()
}

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
