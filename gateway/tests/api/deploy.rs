//! `/api/deploy` and `/api/deployments` through the gateway, against the real project-service
//! and deploy-service (in-process) and stand-ins for Vercel, Netlify and Railway.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use service_runtime::testing::{TempDir, fresh_sqlite_url};

use crate::helpers::*;
use fake_providers::netlify::{self as fake_netlify, FakeNetlify};
use fake_providers::railway::{self as fake_railway, FakeRailway};
use fake_providers::vercel::{self as fake_vercel, FakeVercel};

/// The gateway in front of project-service and deploy-service, and the fake providers.
struct DeployStack {
    gateway: Gateway,
    vercel: FakeVercel,
    netlify: FakeNetlify,
    railway: FakeRailway,
    _deploy: Server,
    _project: ProjectService,
    _dir: TempDir,
}

impl DeployStack {
    /// Generous limits and every provider configured.
    async fn start() -> Self {
        Self::start_with(|_| {}, |g| g.limits = generous_limits()).await
    }

    async fn start_with(
        adjust_deploy: impl FnOnce(&mut deploy_service::Config),
        adjust_gateway: impl FnOnce(&mut gateway::Config),
    ) -> Self {
        let project = ProjectService::start(Db::Sqlite).await;
        let (vercel, netlify, railway) = (
            fake_vercel::start(),
            fake_netlify::start(),
            fake_railway::start(),
        );
        let (database_url, dir) = fresh_sqlite_url();
        let mut config = deploy_service::Config::with_database_url(database_url);
        config.project_service_url = project.url();
        config.vercel.api_url = vercel.url();
        config.vercel.token = Some(SecretString::from(fake_vercel::TOKEN));
        config.netlify.api_url = netlify.api_url();
        config.netlify.token = Some(SecretString::from(fake_netlify::TOKEN));
        config.railway.api_url = railway.api_url();
        config.railway.token = Some(SecretString::from(fake_railway::TOKEN));
        config.railway.project_id = Some(fake_railway::PROJECT.into());
        config.railway.environment_id = Some(fake_railway::ENVIRONMENT.into());
        config.railway.service_id = Some(fake_railway::SERVICE.into());
        config.retry.attempts = 2;
        config.retry.initial_backoff = Duration::from_millis(20);
        config.retry.request_timeout = Duration::from_secs(5);
        config.poller.tick = Duration::from_millis(20);
        config.poller.min_interval = Duration::from_millis(30);
        config.poller.max_interval = Duration::from_millis(150);
        adjust_deploy(&mut config);
        let deploy = Server::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            move |listener, shutdown| {
                deploy_service::run(config, listener, async {
                    let _ = shutdown.await;
                })
            },
        );

        let mut gateway_config = gateway_config(&project.url());
        gateway_config.services.deploy = format!("http://{}", deploy.addr);
        adjust_gateway(&mut gateway_config);
        let gateway = Gateway::start(gateway_config).await;
        Self {
            gateway,
            vercel,
            netlify,
            railway,
            _deploy: deploy,
            _project: project,
            _dir: dir,
        }
    }

    /// A small static site of `user`; returns the project id.
    async fn site(&self, user: &str) -> String {
        let gw = &self.gateway;
        let project = gw.create_project(user, "site").await;
        let id = project["id"].as_str().unwrap().to_string();
        for (path, content) in [
            ("index.html", "<h1>hello</h1>"),
            ("css/site.css", "body { color: red }"),
        ] {
            let response = gw
                .put(&format!("/api/projects/{id}/files/{path}"), user)
                .json(&json!({ "content": content }))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
        id
    }

    async fn post_deploy(&self, user: &str, body: Value) -> reqwest::Response {
        self.gateway
            .post("/api/deploy", user)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Starts a deployment that must be accepted; returns it.
    async fn deploy(&self, user: &str, body: Value) -> Value {
        let response = self.post_deploy(user, body).await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let deployment: Value = response.json().await.unwrap();
        assert_eq!(
            location,
            format!("/api/deployments/{}", deployment["id"].as_str().unwrap())
        );
        deployment
    }

    async fn get(&self, user: &str, id: &str) -> Value {
        let response = self
            .gateway
            .get(&format!("/api/deployments/{id}"), user)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Polls the deployment until it is in `state`.
    async fn wait_for_state(&self, user: &str, id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let deployment = self.get(user, id).await;
            if deployment["state"] == state {
                return deployment;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached {state}: {deployment:#}"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn events(&self, user: &str, id: &str) -> EventStream {
        let response = self
            .gateway
            .get(&format!("/api/deployments/{id}/events"), user)
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
        EventStream::new(response)
    }

    /// Watches `id` on the SSE stream until it ends; returns the `deployment` events, the last
    /// of which must be final.
    async fn watch_to_end(&self, user: &str, id: &str) -> Vec<Value> {
        let events = self.events(user, id).await.rest().await;
        let last = events.last().expect("at least one event");
        assert_eq!(last["final"], true, "{events:#?}");
        events
    }
}

/// One SSE frame.
#[derive(Debug)]
pub(crate) enum Frame {
    /// `: …` comment.
    Comment,
    /// An event: (id, name, data).
    Event(Option<String>, String, Value),
}

/// A client's view of an SSE response, read frame by frame.
pub(crate) struct EventStream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl EventStream {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next frame, or `None` at the end of the stream; panics after 20 s of silence.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(block.trim_end()));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("an SSE frame within 20 s");
            match chunk {
                Some(chunk) => self
                    .buffer
                    .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
                None => {
                    assert!(self.buffer.trim().is_empty(), "partial frame at the end");
                    return None;
                }
            }
        }
    }

    /// The next `deployment` event's data, skipping comments.
    async fn next_event(&mut self) -> Option<Value> {
        loop {
            match self.next().await? {
                Frame::Comment => continue,
                Frame::Event(id, name, data) => {
                    assert_eq!(name, "deployment", "{data:#}");
                    assert_eq!(
                        id.as_deref(),
                        Some(data["sequence"].to_string().as_str()),
                        "SSE id is the sequence"
                    );
                    return Some(data);
                }
            }
        }
    }

    /// Every remaining `deployment` event.
    async fn rest(mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event);
        }
        events
    }
}

fn parse_frame(block: &str) -> Frame {
    if block.lines().all(|l| l.starts_with(':')) {
        return Frame::Comment;
    }
    let (mut id, mut name, mut data) = (None, String::new(), Value::Null);
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("event: ") {
            name = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = serde_json::from_str(v).unwrap();
        }
    }
    Frame::Event(id, name, data)
}

fn is_rfc3339(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

/// The states passed through, without repeats.
fn states(events: &[Value]) -> Vec<String> {
    let mut states: Vec<String> = Vec::new();
    for event in events {
        let state = event["state"].as_str().unwrap().to_string();
        if states.last() != Some(&state) {
            states.push(state);
        }
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_to_each_provider_reaches_ready_with_its_url() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;

    for (provider, env, url_prefix) in [
        (
            "vercel",
            json!({"API_URL": "https://api.example"}),
            "https://autocrea-",
        ),
        ("netlify", json!({}), "https://site-"),
        (
            "railway",
            json!({"PORT": "8080"}),
            "https://web-production-1",
        ),
    ] {
        let deployment = stack
            .deploy(
                &user,
                json!({"projectId": project, "provider": provider, "env": env}),
            )
            .await;
        assert_eq!(deployment["state"], "queued", "{deployment:#}");
        assert_eq!(deployment["provider"], provider);
        assert_eq!(deployment["projectId"], project.as_str());
        assert_eq!(deployment["target"], "production");
        assert!(is_rfc3339(&deployment["createdAt"]), "{deployment:#}");
        assert_eq!(deployment["finishedAt"], Value::Null);
        assert!(deployment.get("ownerId").is_none());
        let id = deployment["id"].as_str().unwrap();

        let events = stack.watch_to_end(&user, id).await;
        let seen = states(&events);
        assert_eq!(seen.first().map(String::as_str), Some("queued"), "{seen:?}");
        assert_eq!(seen.last().map(String::as_str), Some("ready"), "{seen:?}");
        assert!(seen.contains(&"building".to_string()), "{seen:?}");
        let sequences: Vec<i64> = events
            .iter()
            .map(|e| e["sequence"].as_i64().unwrap())
            .collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        assert!(events.iter().all(|e| e["deploymentId"] == id));
        assert!(events.iter().all(|e| is_rfc3339(&e["createdAt"])));
        let last = events.last().unwrap();
        let url = last["url"].as_str().unwrap();
        assert!(url.starts_with(url_prefix), "{provider}: {url}");

        let stored = stack.get(&user, id).await;
        assert_eq!(stored["state"], "ready");
        assert_eq!(stored["url"], url);
        assert_eq!(stored["error"], Value::Null);
        assert!(stored["providerDeploymentId"].as_str().is_some());
        assert!(is_rfc3339(&stored["finishedAt"]), "{stored:#}");
    }

    // Each provider was really used, with the variables passed through.
    // Vercel did not know the project: 404 on the variables, project created, variables again.
    let env = stack.vercel.matching("POST", "/v10/projects/");
    assert_eq!(env.len(), 2, "{env:?}");
    assert_eq!(env[1].json()[0]["key"], "API_URL");
    assert_eq!(stack.vercel.matching("POST", "/v11/projects").len(), 1);
    assert_eq!(stack.vercel.matching("POST", "/v13/deployments").len(), 2); // missing_files, then create
    assert_eq!(stack.vercel.matching("POST", "/v2/files").len(), 2);
    assert_eq!(stack.netlify.matching("PUT", "/api/v1/deploys/").len(), 2);
    let variables = stack.railway.operations("variableCollectionUpsert");
    assert_eq!(
        variables[0]["variables"]["input"]["variables"]["PORT"],
        "8080"
    );
    assert_eq!(stack.railway.operations("serviceInstanceDeployV2").len(), 1);

    // The history lists all three, newest first, one page at a time.
    let page: Value = stack
        .gateway
        .get(
            &format!("/api/deployments?projectId={project}&limit=2"),
            &user,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["railway", "netlify"]);
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let page: Value = stack
        .gateway
        .get(
            &format!("/api/deployments?projectId={project}&limit=2&cursor={cursor}"),
            &user,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["provider"], "vercel");
    assert!(page.get("nextCursor").is_none(), "{page:#}");

    // The stream of a finished deployment replays its log and ends; `Last-Event-ID` resumes.
    let id = page["items"][0]["id"].as_str().unwrap();
    let all = stack.watch_to_end(&user, id).await;
    let second = all[1]["sequence"].as_i64().unwrap();
    let response = stack
        .gateway
        .get(&format!("/api/deployments/{id}/events"), &user)
        .header("last-event-id", second.to_string())
        .send()
        .await
        .unwrap();
    let resumed = EventStream::new(response).rest().await;
    assert_eq!(resumed.len(), all.len() - 2, "{resumed:#?}");
    assert_eq!(resumed[0]["sequence"], all[2]["sequence"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_422_naming_the_variable_and_nothing_is_sent() {
    let stack = DeployStack::start_with(
        |deploy| deploy.vercel.token = None,
        |g| g.limits = generous_limits(),
    )
    .await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;

    let response = stack
        .post_deploy(&user, json!({"projectId": project, "provider": "vercel"}))
        .await;
    let problem = assert_problem(response, 422).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("VERCEL_TOKEN"),
        "{problem:#}"
    );
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("failed-precondition")
    );
    assert!(stack.vercel.requests().is_empty(), "nothing sent to Vercel");

    // Nothing was recorded either.
    let page: Value = stack
        .gateway
        .get("/api/deployments", &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_build_reaches_canceled_on_the_live_stream_and_calls_the_provider() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;
    stack.vercel.hold(true);

    let deployment = stack
        .deploy(&user, json!({"projectId": project, "provider": "vercel"}))
        .await;
    let id = deployment["id"].as_str().unwrap();
    let building = stack.wait_for_state(&user, id, "building").await;
    let provider_id = building["providerDeploymentId"]
        .as_str()
        .unwrap()
        .to_string();

    // The stream replays the log up to `building`; then, idle while the provider builds, it
    // sends heartbeat comments.
    let mut stream = stack.events(&user, id).await;
    let mut seen = Vec::new();
    let mut last_event = tokio::time::Instant::now();
    while let Frame::Event(_, _, event) = stream
        .next()
        .await
        .expect("the stream stays open while building")
    {
        assert_eq!(event["final"], false, "{event:#}");
        seen.push(event);
        last_event = tokio::time::Instant::now();
    }
    assert_eq!(
        states(&seen).last().map(String::as_str),
        Some("building"),
        "{seen:#?}"
    );
    assert!(
        last_event.elapsed() >= Duration::from_secs(5),
        "a heartbeat is sent when idle, not between events"
    );

    let response = stack
        .gateway
        .post(&format!("/api/deployments/{id}/cancel"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let canceled: Value = response.json().await.unwrap();
    assert_eq!(canceled["state"], "canceled");
    assert!(is_rfc3339(&canceled["finishedAt"]));

    // The open stream sees the change and ends with it.
    let rest = stream.rest().await;
    let last = rest.last().expect("the final event");
    assert_eq!(last["state"], "canceled");
    assert_eq!(last["final"], true);

    let cancels = stack.vercel.matching("PATCH", "/v12/deployments/");
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        cancels[0].path,
        format!("/v12/deployments/{provider_id}/cancel")
    );

    // A final deployment cannot be canceled again.
    let again = stack
        .gateway
        .post(&format!("/api/deployments/{id}/cancel"), &user)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(again, 422).await;
    assert!(problem["detail"].as_str().unwrap().contains("canceled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_makes_the_previous_ready_deployment_live_again() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;
    let body = json!({"projectId": project, "provider": "netlify"});

    let first = stack.deploy(&user, body.clone()).await;
    let first_id = first["id"].as_str().unwrap();
    stack.watch_to_end(&user, first_id).await;
    let first = stack.get(&user, first_id).await;

    // Nothing before the first deployment to go back to.
    let response = stack
        .gateway
        .post(&format!("/api/deployments/{first_id}/rollback"), &user)
        .send()
        .await
        .unwrap();
    assert_problem(response, 422).await;

    let second = stack.deploy(&user, body).await;
    let second_id = second["id"].as_str().unwrap();
    stack.watch_to_end(&user, second_id).await;

    let response = stack
        .gateway
        .post(&format!("/api/deployments/{second_id}/rollback"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let rollback: Value = response.json().await.unwrap();
    assert_eq!(rollback["rollbackOf"], first_id);
    assert_eq!(rollback["provider"], "netlify");
    let rollback_id = rollback["id"].as_str().unwrap();
    assert_ne!(rollback_id, first_id);
    assert_ne!(rollback_id, second_id);

    let events = stack.watch_to_end(&user, rollback_id).await;
    assert_eq!(events.last().unwrap()["state"], "ready", "{events:#?}");
    let restores: Vec<String> = stack
        .netlify
        .matching("POST", "/api/v1/sites/")
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.ends_with("/restore"))
        .collect();
    let first_provider_id = first["providerDeploymentId"].as_str().unwrap();
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert!(
        restores[0].ends_with(&format!("/deploys/{first_provider_id}/restore")),
        "{restores:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_with_an_idempotency_key_creates_one_deployment() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"projectId": project, "provider": "railway", "env": {"MODE": "prod"}});

    let send = |body: Value| {
        stack
            .gateway
            .post("/api/deploy", &user)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let retry = send(body.clone()).await.unwrap();
    assert_eq!(retry.status(), 202);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);

    // The same key for another request is a conflict, not a second deployment.
    let mut other = body.clone();
    other["target"] = json!("preview");
    let conflict = send(other).await.unwrap();
    assert_problem(conflict, 409).await;

    let page: Value = stack
        .gateway
        .get(&format!("/api/deployments?projectId={project}"), &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page:#}");
    stack
        .watch_to_end(&user, first["id"].as_str().unwrap())
        .await;
    assert_eq!(stack.railway.operations("serviceInstanceDeployV2").len(), 1);

    // A key that is too long is named as the header the client sent.
    let response = stack
        .gateway
        .post("/api/deploy", &user)
        .header("idempotency-key", "k".repeat(300))
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_group_refuses_the_11th_request_in_an_hour() {
    // Default limits: deploy 10 / hour, shared by /api/deploy and /api/deployments.
    let stack = DeployStack::start_with(|_| {}, |_| {}).await;
    let user = unique_user("dep_limit");
    let project = stack.site(&user).await;
    for i in 0..10 {
        let response = stack
            .post_deploy(&user, json!({"projectId": project, "provider": "netlify"}))
            .await;
        assert_eq!(response.status(), 202, "request {}", i + 1);
        assert_eq!(response.headers()["ratelimit-limit"], "10");
    }
    let refused = stack
        .post_deploy(&user, json!({"projectId": project, "provider": "netlify"}))
        .await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let problem = assert_problem(refused, 429).await;
    assert!(problem["detail"].as_str().unwrap().contains("deploy"));
    let listing = stack
        .gateway
        .get("/api/deployments", &user)
        .send()
        .await
        .unwrap();
    assert_problem(listing, 429).await;

    // Projects are another group, and other users have budgets of their own.
    let projects = stack
        .gateway
        .get("/api/projects", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(projects.status(), 200);
    let other = stack
        .gateway
        .get("/api/deployments", &unique_user("dep_other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_deployment_is_404() {
    let stack = DeployStack::start().await;
    let alice = unique_user("alice");
    let bob = unique_user("bob");
    let project = stack.site(&alice).await;
    let deployment = stack
        .deploy(&alice, json!({"projectId": project, "provider": "vercel"}))
        .await;
    let id = deployment["id"].as_str().unwrap();
    stack.watch_to_end(&alice, id).await;

    let gw = &stack.gateway;
    for response in [
        gw.get(&format!("/api/deployments/{id}"), &bob),
        gw.get(&format!("/api/deployments/{id}/events"), &bob),
        gw.post(&format!("/api/deployments/{id}/cancel"), &bob),
        gw.post(&format!("/api/deployments/{id}/rollback"), &bob),
    ] {
        assert_problem(response.send().await.unwrap(), 404).await;
    }
    let page: Value = gw
        .get(&format!("/api/deployments?projectId={project}"), &bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
    // Nor can Bob ship Alice's project.
    let response = stack
        .post_deploy(&bob, json!({"projectId": project, "provider": "vercel"}))
        .await;
    assert_problem(response, 404).await;
    // An id that is no deployment at all looks the same.
    let response = gw
        .get("/api/deployments/not-a-deployment", &alice)
        .send()
        .await
        .unwrap();
    assert_problem(response, 404).await;
    assert_eq!(stack.get(&alice, id).await["state"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_with_per_field_errors() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;

    let fields = |problem: &Value| -> Vec<String> {
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(!e["message"].as_str().unwrap().is_empty());
                e["field"].as_str().unwrap().to_string()
            })
            .collect()
    };

    let response = stack
        .post_deploy(&user, json!({"projectId": project, "provider": "heroku"}))
        .await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["provider"], "{problem:#}");

    let response = stack
        .post_deploy(&user, json!({"provider": "vercel"}))
        .await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["projectId"], "{problem:#}");

    let response = stack.post_deploy(&user, json!({})).await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["projectId", "provider"], "{problem:#}");

    let response = stack
        .post_deploy(
            &user,
            json!({"projectId": project, "provider": "vercel", "target": "staging"}),
        )
        .await;
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["target"], "{problem:#}");

    let response = stack
        .gateway
        .get("/api/deployments?limit=0", &user)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(fields(&problem), ["limit"], "{problem:#}");

    let response = stack
        .gateway
        .get("/api/deployments?cursor=garbage", &user)
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;

    // Nothing reached a provider.
    assert!(stack.vercel.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_routes_are_in_the_openapi_document() {
    let stack = DeployStack::start().await;
    let doc: Value = stack
        .gateway
        .http
        .get(stack.gateway.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/deploy",
        "/api/deployments",
        "/api/deployments/{id}",
        "/api/deployments/{id}/events",
        "/api/deployments/{id}/cancel",
        "/api/deployments/{id}/rollback",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"].get("Deployment").is_some());
}
