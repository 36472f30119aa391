//! `/api/sandbox` through the gateway against the real sandbox-service and Docker engine.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// sandbox-service on the real engine, with a label of its own so that its start-up sweep never
/// touches containers of other tests.
fn start_sandbox(docker_host: Option<&str>) -> Server {
    let mut config = sandbox_service::Config {
        instance: format!("gw-test-{}", uuid::Uuid::new_v4().simple()),
        pool_size: 0,
        caller_keys: Some(service_runtime::testing::caller_keys()),
        ..Default::default()
    };
    config.docker_host = docker_host.map(str::to_string);
    Server::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        move |listener, shutdown| {
            sandbox_service::run(config, listener, async {
                let _ = shutdown.await;
            })
        },
    )
}

pub(crate) async fn sandbox_stack(
    docker_host: Option<&str>,
    adjust: impl FnOnce(&mut gateway::Config),
) -> (Stack, Server) {
    let sandbox = start_sandbox(docker_host);
    let url = format!("http://{}", sandbox.addr);
    let stack = Stack::start_with(Db::Sqlite, move |config| {
        config.limits = generous_limits();
        config.services.sandbox = url;
        adjust(config);
    })
    .await;
    (stack, sandbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_code_and_streams_output() {
    let (stack, _sandbox) = sandbox_stack(None, |_| {}).await;
    let gw = &stack.gateway;
    let user = unique_user("sbx");

    let languages: Value = gw
        .get("/api/sandbox/languages", &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = languages["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["language"].as_str().unwrap())
        .collect();
    for expected in ["javascript", "python", "bash"] {
        assert!(names.contains(&expected), "{names:?}");
    }

    // A project file, run through the sandbox.
    let project = gw.create_project(&user, "runner").await;
    let id = project["id"].as_str().unwrap();
    gw.put(&format!("/api/projects/{id}/files/main.py"), &user)
        .json(&json!({"content": "import sys\nprint('hello', sys.argv[1], input())\nsys.exit(3)"}))
        .send()
        .await
        .unwrap();
    let file: Value = gw
        .get(&format!("/api/projects/{id}/files/main.py"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = gw
        .post("/api/sandbox/execute", &user)
        .json(&json!({
            "language": "python",
            "files": [{"name": "main.py", "content": file["content"]}],
            "args": ["world"],
            "stdin": "from stdin\n",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["stdout"], "hello world from stdin\n");
    assert_eq!(result["exitCode"], 3);
    assert_eq!(result["timedOut"], false);
    assert_eq!(result["limits"]["memoryBytes"], 512 * 1024 * 1024);
    assert_eq!(result["limits"]["network"], false);

    // Streaming: output events arrive, then the result.
    let response = gw
        .post("/api/sandbox/execute", &user)
        .header("accept", "text/event-stream")
        .json(&json!({
            "language": "bash",
            "code": "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .unwrap()
        .unwrap();
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert!(events.len() >= 3, "{body}");
    assert_eq!(events.last(), Some(&"result"), "{body}");
    assert!(
        events.contains(&"stdout") && events.contains(&"stderr"),
        "{body}"
    );
    let result_line = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap();
    let result: Value = serde_json::from_str(result_line).unwrap();
    assert_eq!(result["stdout"], "one\nthree\n");
    assert_eq!(result["stderr"], "two\n");

    // Bad requests get 400 with the field at fault.
    for (body, field) in [
        (json!({"language": "cobol", "code": "x"}), "language"),
        (
            json!({"language": "python", "code": "print(1)", "timeoutMs": -5}),
            "timeoutMs",
        ),
        (
            json!({"language": "python", "code": "print(1)", "timeoutMs": 10_000_000}),
            "timeoutMs",
        ),
    ] {
        let response = gw
            .post("/api/sandbox/execute", &user)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 400).await;
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{problem}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_group_has_its_own_limit() {
    let (stack, _sandbox) =
        sandbox_stack(None, |c| c.limits.sandbox = "2/1h".parse().unwrap()).await;
    let gw = &stack.gateway;
    let user = unique_user("sbx_limit");
    for _ in 0..2 {
        let response = gw
            .get("/api/sandbox/languages", &user)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_problem(
        gw.get("/api/sandbox/languages", &user)
            .send()
            .await
            .unwrap(),
        429,
    )
    .await;
    assert_eq!(
        gw.get("/api/projects", &user)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_docker_the_gateway_answers_503_with_the_reason() {
    let (stack, _sandbox) = sandbox_stack(Some("unix:///nonexistent/docker.sock"), |_| {}).await;
    let gw = &stack.gateway;
    let user = unique_user("nodocker");
    let response = gw
        .post("/api/sandbox/execute", &user)
        .json(&json!({"language": "python", "code": "print(1)"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 503).await;
    let detail = problem["detail"].as_str().unwrap().to_lowercase();
    assert!(
        detail.contains("sandbox-service") && detail.contains("docker"),
        "{detail}"
    );
}
