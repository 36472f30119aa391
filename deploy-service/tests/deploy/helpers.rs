//! `TestApp`: the real project-service and deploy-service running in-process on loopback ports,
//! deploy-service on a fresh database and configured against the fake providers.

pub use service_runtime::testing::{as_user, as_user_deploying, expect_code};
use std::net::SocketAddr;
use std::time::Duration;

use autocrea_proto::deploy::v1 as pb;
use autocrea_proto::deploy::v1::deploy_service_client::DeployServiceClient;
use autocrea_proto::project::v1 as project_pb;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use deploy_service::Config;
use secrecy::SecretString;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, channel};
use service_runtime::testing::{TempDir, fresh_postgres_url, fresh_sqlite_url};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Status;
use tonic::transport::Channel;

use crate::{fake_netlify, fake_railway, fake_vercel};

/// The database engine deploy-service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const ALICE: &str = "user_alice";
pub const BOB: &str = "user_bob";

/// Both services, the fakes, and clients.
pub struct TestApp {
    pub vercel: fake_vercel::FakeVercel,
    pub netlify: fake_netlify::FakeNetlify,
    pub railway: fake_railway::FakeRailway,
    pub config: Config,
    pub deploy_addr: SocketAddr,
    deploy: DeployServiceClient<Channel>,
    projects: ProjectServiceClient<Channel>,
    deploy_stop: Option<oneshot::Sender<()>>,
    deploy_task: Option<JoinHandle<anyhow::Result<()>>>,
    project_stop: Option<oneshot::Sender<()>>,
    _dirs: Vec<TempDir>,
}

/// A deploy-service configuration with every provider pointed at the fakes and short timings.
fn test_config(
    database_url: String,
    project_url: String,
    vercel: &fake_vercel::FakeVercel,
    netlify: &fake_netlify::FakeNetlify,
    railway: &fake_railway::FakeRailway,
) -> Config {
    let mut config = Config::with_database_url(database_url);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    config.db_max_connections = 5;
    config.project_service_url = project_url;
    config.vercel.api_url = vercel.url();
    config.vercel.token = Some(SecretString::from(fake_vercel::TOKEN));
    config.netlify.api_url = netlify.api_url();
    config.netlify.token = Some(SecretString::from(fake_netlify::TOKEN));
    config.railway.api_url = railway.api_url();
    config.retry.attempts = 3;
    config.retry.initial_backoff = Duration::from_millis(20);
    config.retry.max_backoff = Duration::from_millis(100);
    config.retry.request_timeout = Duration::from_secs(5);
    config.poller.tick = Duration::from_millis(20);
    config.poller.min_interval = Duration::from_millis(30);
    config.poller.max_interval = Duration::from_millis(150);
    config
}

impl TestApp {
    /// Both services, with Alice's accounts connected at each provider (the first account of
    /// each fake); the fakes' request records start empty.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// As [`TestApp::spawn`]; `adjust` may change deploy-service's configuration.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let app = Self::spawn_unconnected(backend, adjust).await;
        for provider in ["vercel", "netlify", "railway"] {
            app.connect(ALICE, provider, first_token(provider))
                .await
                .expect("connect Alice");
        }
        app.vercel.clear_requests();
        app.netlify.clear_requests();
        app.railway.clear_requests();
        app
    }

    /// Both services, nobody connected.
    pub async fn spawn_unconnected(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut dirs = Vec::new();
        // project-service is only the source of files here: SQLite is enough for it.
        let (project_db, dir) = fresh_sqlite_url();
        dirs.push(dir);
        let database_url = match backend {
            Backend::Sqlite => {
                let (url, dir) = fresh_sqlite_url();
                dirs.push(dir);
                url
            }
            Backend::Postgres => fresh_postgres_url().await,
        };

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let project_addr = listener.local_addr().unwrap();
        let (project_stop, stopped) = oneshot::channel::<()>();
        let mut project_config = project_service::Config::with_database_url(project_db);
        project_config.caller_keys = Some(service_runtime::testing::caller_keys());
        tokio::spawn(project_service::run(project_config, listener, async {
            let _ = stopped.await;
        }));
        let projects = ProjectServiceClient::new(
            channel(&format!("http://{project_addr}"), ClientOptions::default()).unwrap(),
        )
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);

        let vercel = fake_vercel::start();
        let netlify = fake_netlify::start();
        let railway = fake_railway::start();
        let mut config = test_config(
            database_url,
            format!("http://{project_addr}"),
            &vercel,
            &netlify,
            &railway,
        );
        adjust(&mut config);

        let (deploy_addr, deploy, deploy_stop, deploy_task) = start_deploy(config.clone()).await;
        Self {
            vercel,
            netlify,
            railway,
            config,
            deploy_addr,
            deploy,
            projects,
            deploy_stop: Some(deploy_stop),
            deploy_task: Some(deploy_task),
            project_stop: Some(project_stop),
            _dirs: dirs,
        }
    }

    /// Stops deploy-service (as a rolling update would) and waits until it has returned.
    pub async fn stop_deploy(&mut self) {
        if let Some(stop) = self.deploy_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.deploy_task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("deploy-service stops within 20 s")
                .expect("deploy-service task")
                .expect("deploy-service run");
        }
    }

    /// Starts deploy-service again on the same database (and a new port).
    pub async fn start_deploy_again(&mut self) {
        let mut config = self.config.clone();
        // A new process has a new replica id; leases of the old one must not matter.
        config.replica_id = format!("restarted-{}", uuid::Uuid::new_v4().simple());
        let (addr, client, stop, task) = start_deploy(config).await;
        self.deploy_addr = addr;
        self.deploy = client;
        self.deploy_stop = Some(stop);
        self.deploy_task = Some(task);
    }

    pub fn client(&self) -> DeployServiceClient<Channel> {
        self.deploy.clone()
    }

    /// Connects `user`'s account at `provider` with `token` (Railway: the project of the fake
    /// account that token opens).
    pub async fn connect(
        &self,
        user: &str,
        provider: &str,
        token: &str,
    ) -> Result<pb::Connection, Status> {
        let project_id = (provider == "railway").then(|| {
            if token == fake_railway::OTHER_TOKEN {
                fake_railway::OTHER_PROJECT.to_string()
            } else {
                fake_railway::PROJECT.to_string()
            }
        });
        self.put_connection(
            user,
            pb::PutConnectionRequest {
                provider: provider.to_string(),
                token: token.to_string(),
                project_id,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn put_connection(
        &self,
        user: &str,
        request: pb::PutConnectionRequest,
    ) -> Result<pb::Connection, Status> {
        self.client()
            .put_connection(as_user(user, request))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn connections(&self, user: &str) -> Vec<pb::Connection> {
        self.client()
            .list_connections(as_user(user, pb::ListConnectionsRequest {}))
            .await
            .expect("list connections")
            .into_inner()
            .connections
    }

    pub async fn targets(
        &self,
        user: &str,
        project: &str,
    ) -> Result<Vec<pb::ProjectTarget>, Status> {
        self.client()
            .list_targets(as_user(
                user,
                pb::ListTargetsRequest {
                    project_id: project.to_string(),
                },
            ))
            .await
            .map(|r| r.into_inner().targets)
    }

    /// deploy-service's own database, for checks of what is stored.
    pub async fn database(&self) -> service_runtime::db::Database {
        use secrecy::ExposeSecret;
        service_runtime::db::Database::connect(self.config.database_url.expose_secret(), 2)
            .await
            .expect("connect to deploy-service's database")
    }

    /// A project of `user` holding `files`.
    pub async fn project_with(&self, user: &str, files: &[(&str, &[u8])]) -> String {
        let project = self
            .projects
            .clone()
            .create_project(as_user(
                user,
                project_pb::CreateProjectRequest {
                    name: "site".to_string(),
                    description: String::new(),
                    language: "HTML".to_string(),
                    framework: String::new(),
                },
            ))
            .await
            .expect("create project")
            .into_inner();
        for (path, content) in files {
            self.put_file(user, &project.id, path, content).await;
        }
        project.id
    }

    pub async fn put_file(&self, user: &str, project: &str, path: &str, content: &[u8]) {
        self.projects
            .clone()
            .put_file(as_user(
                user,
                project_pb::PutFileRequest {
                    project_id: project.to_string(),
                    path: path.to_string(),
                    content: content.to_vec(),
                },
            ))
            .await
            .expect("put file");
    }

    /// A small static site.
    pub async fn site(&self, user: &str) -> String {
        self.project_with(
            user,
            &[
                ("index.html", b"<h1>hello</h1>"),
                ("about.html", b"<h1>about</h1>"),
                ("css/site.css", b"body { color: red }"),
                // Same content as another file: stored and uploaded once.
                ("copy of index.html", b"<h1>hello</h1>"),
            ],
        )
        .await
    }

    pub async fn create(
        &self,
        user: &str,
        request: pb::CreateDeploymentRequest,
    ) -> Result<pb::Deployment, Status> {
        self.client()
            .create_deployment(as_user_deploying(
                user,
                &request.project_id.clone(),
                request,
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// Creates a deployment of `project` to `provider` as `user`, which must succeed.
    pub async fn deploy(&self, user: &str, project: &str, provider: &str) -> pb::Deployment {
        self.create(user, request(project, provider))
            .await
            .expect("create deployment")
    }

    pub async fn get(&self, user: &str, id: &str) -> Result<pb::Deployment, Status> {
        self.client()
            .get_deployment(as_user(
                user,
                pb::GetDeploymentRequest { id: id.to_string() },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn cancel(&self, user: &str, id: &str) -> Result<pb::Deployment, Status> {
        self.client()
            .cancel_deployment(as_user(
                user,
                pb::CancelDeploymentRequest { id: id.to_string() },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn rollback(&self, user: &str, id: &str) -> Result<pb::Deployment, Status> {
        self.client()
            .rollback_deployment(as_user(
                user,
                pb::RollbackDeploymentRequest { id: id.to_string() },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn list(
        &self,
        user: &str,
        request: pb::ListDeploymentsRequest,
    ) -> Result<pb::ListDeploymentsResponse, Status> {
        self.client()
            .list_deployments(as_user(user, request))
            .await
            .map(|r| r.into_inner())
    }

    /// Every event of `id` until the stream ends (which it must within 20 s).
    pub async fn watch(&self, user: &str, id: &str) -> Result<Vec<pb::DeploymentEvent>, Status> {
        let mut stream = self
            .client()
            .watch_deployment(as_user(
                user,
                pb::WatchDeploymentRequest { id: id.to_string() },
            ))
            .await?
            .into_inner();
        let mut events = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(event) = stream.next().await {
                events.push(event?);
            }
            Ok::<_, Status>(())
        })
        .await
        .unwrap_or_else(|_| panic!("event stream did not end; events so far: {events:#?}"))?;
        Ok(events)
    }

    /// Watches `id` to its end and returns the deployment as then stored, asserting the last
    /// event is final and matches it.
    pub async fn finish(&self, user: &str, id: &str) -> pb::Deployment {
        let events = self.watch(user, id).await.expect("watch");
        let last = events.last().expect("at least one event");
        assert!(
            last.r#final,
            "stream ended before a final state: {events:#?}"
        );
        let deployment = self.get(user, id).await.expect("get");
        assert_eq!(last.state, deployment.state, "{events:#?}");
        deployment
    }

    /// Waits until deployment `id` is in `state` (polling GetDeployment).
    pub async fn wait_for_state(&self, user: &str, id: &str, state: &str) -> pb::Deployment {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let deployment = self.get(user, id).await.expect("get");
            if deployment.state == state {
                return deployment;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deployment never reached {state}: {deployment:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.deploy_stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.project_stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start_deploy(
    config: Config,
) -> (
    SocketAddr,
    DeployServiceClient<Channel>,
    oneshot::Sender<()>,
    JoinHandle<anyhow::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(deploy_service::run(config, listener, async {
        let _ = stopped.await;
    }));
    let client = DeployServiceClient::new(
        channel(&format!("http://{addr}"), ClientOptions::default()).unwrap(),
    );
    (addr, client, stop, task)
}

/// The token of each fake's first account.
pub fn first_token(provider: &str) -> &'static str {
    match provider {
        "vercel" => fake_vercel::TOKEN,
        "netlify" => fake_netlify::TOKEN,
        _ => fake_railway::TOKEN,
    }
}

/// The token of each fake's second account.
pub fn second_token(provider: &str) -> &'static str {
    match provider {
        "vercel" => fake_vercel::OTHER_TOKEN,
        "netlify" => fake_netlify::OTHER_TOKEN,
        _ => fake_railway::OTHER_TOKEN,
    }
}

/// A request for `project` on `provider` with defaults.
pub fn request(project: &str, provider: &str) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        project_id: project.to_string(),
        provider: provider.to_string(),
        ..Default::default()
    }
}

/// The states the events passed through, without repeats.
pub fn states(events: &[pb::DeploymentEvent]) -> Vec<String> {
    let mut states: Vec<String> = Vec::new();
    for event in events {
        if states.last() != Some(&event.state) {
            states.push(event.state.clone());
        }
    }
    states
}
