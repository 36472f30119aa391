//! Prometheus metrics of the gateway and of a service's metrics port.

use super::*;

/// Samples of a Prometheus text exposition, keyed by `name{labels}` as written; panics on a
/// line that is not valid text format.
pub(super) fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line}"
            );
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

pub(super) async fn scrape(gateway: &Gateway) -> HashMap<String, f64> {
    let response = gateway
        .http
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse_prometheus(&response.text().await.unwrap())
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_rate_limit_rejections() {
    let stack = Stack::start_with(Db::Sqlite, |c| {
        c.limits = generous_limits();
        c.limits.api = "3/1h".parse().unwrap();
    })
    .await;
    let user = unique_user("metrics");
    let before = scrape(&stack.gateway).await;

    let project = stack.gateway.create_project(&user, "counted").await;
    let id = project["id"].as_str().unwrap();
    let path = format!("/api/projects/{id}");
    assert_eq!(
        stack
            .gateway
            .get(&path, &user)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        stack
            .gateway
            .get(&path, &user)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The budget of 3 is spent: the fourth is refused.
    let refused = stack.gateway.get(&path, &user).send().await.unwrap();
    assert_eq!(refused.status(), 429);

    let after = scrape(&stack.gateway).await;
    let created = r#"{method="POST",route="/api/projects",status="201"}"#;
    let read = r#"{method="GET",route="/api/projects/{id}",status="200"}"#;
    let limited = r#"{method="GET",route="/api/projects/{id}",status="429"}"#;
    assert_eq!(
        delta(&before, &after, &format!("http_requests_total{created}")),
        1.0
    );
    assert_eq!(
        delta(&before, &after, &format!("http_requests_total{read}")),
        2.0
    );
    assert_eq!(
        delta(&before, &after, &format!("http_requests_total{limited}")),
        1.0
    );
    assert!(
        !after.keys().any(|k| k.contains(id) || k.contains(&user)),
        "raw paths or user ids in labels"
    );
    assert_eq!(
        delta(
            &before,
            &after,
            r#"rate_limit_rejections_total{group="api"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            r#"rate_limit_rejections_total{group="ai"}"#
        ),
        0.0
    );
    assert!(after.contains_key(r#"rate_limit_rejections_total{group="ai"}"#));
    // The scrape itself is in flight while it is rendered.
    assert_eq!(after["http_requests_in_flight"], 1.0);

    // The histogram of the two reads: cumulative buckets ending in +Inf = count = 2.
    let series = r#"http_request_duration_seconds_bucket{method="GET",route="/api/projects/{id}",status="200",le=""#;
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(series)?.strip_suffix("\"}")?;
            Some((
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                *v,
            ))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 2.0));
    assert_eq!(
        after[&format!("http_request_duration_seconds_count{read}")],
        2.0
    );
    assert!(after[&format!("http_request_duration_seconds_sum{read}")] > 0.0);

    // project-service runs in this process, so its gRPC metrics and pool are in the same registry.
    let grpc = r#"{service="autocrea.project.v1.ProjectService",method="GetProject",code="OK"}"#;
    assert_eq!(
        delta(
            &before,
            &after,
            &format!("grpc_server_requests_total{grpc}")
        ),
        2.0
    );
    assert_eq!(
        after[&format!("grpc_server_request_duration_seconds_count{grpc}")],
        2.0
    );
    assert_eq!(
        after[r#"db_pool_connections{pool="project",state="max"}"#],
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_metrics_port_serves_prometheus_text() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service_runtime::metrics::serve(listener, async {
        let _ = stopped.await;
    }));
    // project-service counts its calls in the process registry the port serves.
    let stack = Stack::start(Db::Sqlite).await;
    stack
        .gateway
        .create_project(&unique_user("port"), "counted")
        .await;

    let http = service_runtime::tls::http_client().build().unwrap();
    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let samples = parse_prometheus(&response.text().await.unwrap());
    let created = r#"grpc_server_requests_total{service="autocrea.project.v1.ProjectService",method="CreateProject",code="OK"}"#;
    assert_eq!(samples[created], 1.0);
    let other = http
        .get(format!("http://{addr}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let _ = stop.send(());
    server.await.unwrap();
}
