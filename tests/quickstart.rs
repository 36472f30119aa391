//! The quick start as README.md gives it: the all-in-one binary on a laptop, no configuration.
//! It starts every service, prints where it listens and a development token; that token works
//! against the API; data and the token survive a restart on the same DATA_DIR; SIGTERM stops it
//! cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use service_runtime::testing::TempDir;

struct Running {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port with `data` as DATA_DIR and reads its banner.
fn start(data: &TempDir) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autocrea"));
    command
        .env_clear()
        .env("DATA_DIR", &data.path)
        .env("GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        // No Docker engine for this one: the sandbox reports not-ready, the rest works.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Coverage runs write their profile where the test runner says.
    for name in ["PATH", "HOME", "LLVM_PROFILE_FILE"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command.spawn().expect("start the autocrea binary");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut base, mut token) = (None, None);
    while token.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the banner with a token within 60 s");
        if let Some(url) = line.strip_prefix("AutoCrea is running at ") {
            base = Some(url.trim().to_string());
        }
        if let Some(t) = line.strip_prefix("export TOKEN=") {
            token = Some(t.trim().to_string());
        }
    }
    Running {
        child,
        base: base.expect("the banner names the address"),
        token: token.unwrap(),
    }
}

/// Asks the process to stop as Docker or Ctrl-C would and expects a clean exit.
fn stop(mut running: Running) {
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    for _ in 0..300 {
        if let Some(exit) = running.child.try_wait().expect("wait") {
            assert!(exit.success(), "clean exit on SIGTERM, got {exit}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the process did not stop within 30 s of SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_works_and_keeps_data_across_restarts() {
    let data = TempDir::new();
    let http = service_runtime::tls::http_client().build().unwrap();

    let first = start(&data);
    let health = http
        .get(format!("{}/health", first.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // No token, no access.
    let anonymous = http
        .get(format!("{}/api/projects", first.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let created = http
        .post(format!("{}/api/projects", first.base))
        .bearer_auth(&first.token)
        .json(&json!({"name": "quick start", "description": "made by the test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let project: Value = created.json().await.unwrap();
    let id = project["id"].as_str().expect("project id").to_string();
    let token = first.token.clone();
    stop(first);

    // Same DATA_DIR: the same development secret (the old token still works) and the project.
    let second = start(&data);
    let fetched = http
        .get(format!("{}/api/projects/{id}", second.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200, "{}", fetched.text().await.unwrap());
    let fetched: Value = fetched.json().await.unwrap();
    assert_eq!(fetched["name"], "quick start");
    assert_eq!(fetched["description"], "made by the test");

    // Without Docker, sandbox runs are refused with a reason instead of failing.
    let run = http
        .post(format!("{}/api/sandbox/execute", second.base))
        .bearer_auth(&token)
        .json(&json!({"language": "python", "code": "print(1)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 503, "{}", run.text().await.unwrap());
    stop(second);
}
