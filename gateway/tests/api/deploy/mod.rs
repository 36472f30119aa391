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

mod integrations;
mod lifecycle;
mod requests;

/// The gateway in front of project-service and deploy-service, and the fake providers.
struct DeployStack {
    gateway: Gateway,
    vercel: FakeVercel,
    netlify: FakeNetlify,
    railway: FakeRailway,
    /// deploy-service's database, to check what it stores.
    deploy_db: String,
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
        let deploy_db = database_url.clone();
        let mut config = deploy_service::Config::with_database_url(database_url);
        config.caller_keys = Some(service_runtime::testing::caller_keys());
        config.project_service_url = project.url();
        config.vercel.api_url = vercel.url();
        config.vercel.token = Some(SecretString::from(fake_vercel::TOKEN));
        config.netlify.api_url = netlify.api_url();
        config.netlify.token = Some(SecretString::from(fake_netlify::TOKEN));
        config.railway.api_url = railway.api_url();
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
            deploy_db,
            _deploy: deploy,
            _project: project,
            _dir: dir,
        }
    }

    /// Connects `user`'s account at `provider` through the API (the first account of each fake;
    /// Railway with its project); returns the answer.
    async fn connect(&self, user: &str, provider: &str, body: Value) -> reqwest::Response {
        self.gateway
            .put(&format!("/api/integrations/{provider}"), user)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Connects `user` at every provider with the fakes' first accounts, then forgets the
    /// requests that took at the fakes.
    async fn connect_all(&self, user: &str) {
        for (provider, body) in [
            ("vercel", json!({"token": fake_vercel::TOKEN})),
            ("netlify", json!({"token": fake_netlify::TOKEN})),
            (
                "railway",
                json!({"token": fake_railway::TOKEN, "projectId": fake_railway::PROJECT}),
            ),
        ] {
            let response = self.connect(user, provider, body).await;
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
        self.vercel.clear_requests();
        self.netlify.clear_requests();
        self.railway.clear_requests();
    }

    /// A small static site of `user`, who is connected at every provider; returns the project
    /// id.
    async fn site(&self, user: &str) -> String {
        self.connect_all(user).await;
        self.unconnected_site(user).await
    }

    /// A small static site of `user`, without connecting anything.
    async fn unconnected_site(&self, user: &str) -> String {
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
