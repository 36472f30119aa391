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

/// Starts the binary on a free port with `data` as DATA_DIR and reads its banner; without a
/// Docker engine, so that the sandbox reports not-ready and the rest works.
fn start(data: &TempDir) -> Running {
    start_with(data, &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")])
}

/// [`start`] with more environment variables.
fn start_with(data: &TempDir, env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_autocrea"));
    command
        .env_clear()
        .env("DATA_DIR", &data.path)
        .env("GATEWAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .envs(env.iter().copied());
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
            // Keep reading after the banner (the receiver is gone by then): a closed pipe would
            // make the process's next line of output fail.
            let _ = tx.send(line);
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

    // Without Docker the platform is degraded, not down: readiness says which service and why.
    let ready = http
        .get(format!("{}/ready", second.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    for service in ready["services"].as_array().unwrap() {
        let degraded = service["name"] == "sandbox-service";
        assert_eq!(
            service["state"],
            if degraded { "degraded" } else { "ready" },
            "{service}"
        );
        if degraded {
            let reason = service["reason"].as_str().unwrap();
            assert!(
                reason.contains("NOT_SERVING") && reason.contains("Docker"),
                "{reason}"
            );
        }
    }

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

/// Every metric the alert rules (deploy/monitoring/alerts.yml) and the dashboards
/// (deploy/monitoring/dashboards/*.json) query is one the platform exports: checked against a live
/// scrape of the all-in-one binary, which serves every service's metrics on the gateway's
/// `/metrics`. A renamed or removed metric fails here instead of silencing an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_and_dashboards_query_only_exported_metrics() {
    let data = TempDir::new();
    // A provider configured (never called here), so that its series exist.
    let running = start_with(
        &data,
        &[
            ("AI_PROVIDER", "anthropic"),
            ("ANTHROPIC_API_KEY", "sk-ant-never-used"),
        ],
    );
    let http = service_runtime::tls::http_client().build().unwrap();
    // One call through to a service, so that the per-call families have been touched.
    let listed = http
        .get(format!("{}/api/projects", running.base))
        .bearer_auth(&running.token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    // With the Docker engine and the runtime image (the test command builds it), every service
    // is ready once sandbox-service's engine probe has answered (slow on a busy machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready: Value = http
            .get(format!("{}/ready", running.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["status"] == "ready" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready within 60 s: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let scrape = http
        .get(format!("{}/metrics", running.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop(running);
    let exported = monitoring::exported_series(&scrape);
    assert!(
        exported.contains("http_requests_total") && exported.contains("sandbox_pool_ready"),
        "the scrape holds the gateway's and the services' metrics:\n{scrape}"
    );

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let rules = std::fs::read_to_string(root.join("alerts.yml")).unwrap();
    let recorded = monitoring::recorded_names(&rules);
    let mut queries: Vec<(String, String)> = monitoring::rule_expressions(&rules)
        .into_iter()
        .map(|e| ("alerts.yml".to_string(), e))
        .collect();
    let mut boards = 0;
    for entry in std::fs::read_dir(root.join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for expr in monitoring::dashboard_expressions(&board) {
            queries.push((name.clone(), expr));
        }
        boards += 1;
    }
    assert!(
        boards >= 4,
        "a dashboard per area (edge, AI, sandbox, deploy)"
    );
    assert!(queries.len() > 30, "the rules and dashboards hold queries");

    let mut missing = Vec::new();
    for (file, expr) in &queries {
        for name in monitoring::metric_names(expr) {
            let known = if name.contains(':') {
                recorded.contains(&name)
            } else {
                name == "up" || exported.contains(&name)
            };
            if !known {
                missing.push(format!("{file}: {name} (in {expr:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics queried but not exported:\n{}",
        missing.join("\n")
    );
    // The check itself sees a wrong name.
    assert_eq!(
        monitoring::metric_names(r#"sum by (le) (rate(no_such_metric_total{a="b"}[5m])) > 1e-9"#),
        ["no_such_metric_total"]
    );
}

/// Reading metric names out of a scrape and out of PromQL, enough for the queries we write.
mod monitoring {
    use std::collections::BTreeSet;

    use serde_json::Value;

    /// The series names a scrape can hold, from its `# TYPE` lines (prometheus-client names a
    /// counter `x` and exports `x_total`; a histogram exports `_bucket`, `_sum` and `_count`).
    pub fn exported_series(scrape: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for line in scrape.lines() {
            let mut words = line.split_whitespace();
            if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                let suffixes: &[&str] = match kind {
                    "counter" => &["", "_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                for suffix in suffixes {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
        names
    }

    /// The `record:` names of a rules file.
    pub fn recorded_names(rules: &str) -> BTreeSet<String> {
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- record:"))
            .map(|n| n.trim().to_string())
            .collect()
    }

    /// Every `expr:` of a rules file, block scalars (`expr: |`) included.
    pub fn rule_expressions(rules: &str) -> Vec<String> {
        let lines: Vec<&str> = rules.lines().collect();
        let mut exprs = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let indent = line.len() - line.trim_start().len();
            i += 1;
            let Some(rest) = line.trim().strip_prefix("expr:") else {
                continue;
            };
            if rest.trim() != "|" {
                exprs.push(rest.trim().to_string());
                continue;
            }
            let mut block = String::new();
            while i < lines.len() {
                let next = lines[i];
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                block.push_str(next.trim());
                block.push(' ');
                i += 1;
            }
            exprs.push(block);
        }
        exprs
    }

    /// Every `expr` of a Grafana dashboard's panels.
    pub fn dashboard_expressions(board: &Value) -> Vec<String> {
        let mut exprs = Vec::new();
        for panel in board["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    exprs.push(expr.to_string());
                }
            }
        }
        exprs
    }

    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        // Aggregation operators, which may stand before their `by (…)`.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];

    /// The metric (and recording rule) names a PromQL expression selects: identifiers outside
    /// strings, label matchers, grouping lists and ranges, that are neither functions nor keywords.
    pub fn metric_names(expr: &str) -> Vec<String> {
        let chars: Vec<char> = expr.chars().collect();
        let mut names = Vec::new();
        let mut i = 0;
        let mut after_grouping = false;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '"' | '\'' => {
                    i += 1;
                    while i < chars.len() && chars[i] != c {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                '{' | '[' => {
                    let close = if c == '{' { '}' } else { ']' };
                    while i < chars.len() && chars[i] != close {
                        i += 1;
                    }
                    i += 1;
                }
                '(' if after_grouping => {
                    // by (a, b): label names, not metrics.
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                    after_grouping = false;
                }
                c if c.is_ascii_digit() || (c == '.' && i + 1 < chars.len()) => {
                    i += 1;
                    while i < chars.len()
                        && (chars[i].is_ascii_alphanumeric()
                            || chars[i] == '.'
                            || ((chars[i] == '-' || chars[i] == '+')
                                && matches!(chars[i - 1], 'e' | 'E')))
                    {
                        i += 1;
                    }
                }
                c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                    let start = i;
                    while i < chars.len()
                        && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                    {
                        i += 1;
                    }
                    let word: String = chars[start..i].iter().collect();
                    let mut next = i;
                    while next < chars.len() && chars[next].is_whitespace() {
                        next += 1;
                    }
                    let call = next < chars.len() && chars[next] == '(';
                    let lower = word.to_ascii_lowercase();
                    if [
                        "by",
                        "without",
                        "on",
                        "ignoring",
                        "group_left",
                        "group_right",
                    ]
                    .contains(&lower.as_str())
                    {
                        after_grouping = true;
                    } else if !call && !KEYWORDS.contains(&lower.as_str()) {
                        names.push(word);
                    }
                }
                _ => i += 1,
            }
        }
        names
    }
}
