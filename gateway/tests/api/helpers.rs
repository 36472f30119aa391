//! One harness for the gateway's integration tests: real project-service and gateway servers on
//! loopback ports, each on its own thread and runtime, so a test can stop and restart one.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use gateway::config::{AuthConfig, Config, LimitsConfig};
use service_runtime::testing::{
    TempDir, fresh_postgres_tls_url, fresh_postgres_url, fresh_sqlite_url,
};
use tokio::sync::oneshot;

pub const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

/// Which database project-service runs on.
#[derive(Debug, Clone, Copy)]
pub enum Db {
    Sqlite,
    Postgres,
    /// PostgreSQL as a role that may connect over TLS only, with `sslmode=verify-full`.
    PostgresTls,
}

/// A server running on its own thread; dropping or stopping it kills it like a crash.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `make(listener, shutdown)` on `addr` (port 0 for any).
    pub fn start<F, Fut>(addr: SocketAddr, make: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + 'static,
    {
        let std_listener = std::net::TcpListener::bind(addr).expect("bind");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let server = make(listener, graceful_rx);
                tokio::select! {
                    result = server => {
                        if let Err(e) = result { eprintln!("server ended: {e:#}"); }
                    }
                    _ = stopped => {
                        let _ = graceful_tx.send(());
                    }
                }
            });
            // Dropping the runtime here ends every task and connection, as a crash would.
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the server and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A small HTTP server (a test's stand-in for an outside service, or a page server) with the
/// routes `configure` mounts, on a loopback port, with one worker.
pub fn serve_app(
    configure: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
) -> Server {
    Server::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        move |listener, shutdown| async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().configure(configure.clone())
            })
            .workers(1)
            .disable_signals()
            .listen(listener.into_std()?)?
            .run();
            let handle = server.handle();
            tokio::spawn(async move {
                let _ = shutdown.await;
                handle.stop(false).await;
            });
            server.await?;
            Ok(())
        },
    )
}

/// ai-service with `config` on a loopback port (bound before this returns, so the gateway's
/// first call connects).
pub fn start_ai_service(config: ai_service::Config) -> Server {
    Server::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        move |listener, shutdown| async move {
            ai_service::run(config, listener, async {
                let _ = shutdown.await;
            })
            .await
        },
    )
}

/// project-service on `db`.
pub struct ProjectService {
    pub server: Server,
    config: project_service::Config,
    _dir: Option<TempDir>,
}

impl ProjectService {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts it with a configuration `adjust` may change (limits).
    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut project_service::Config)) -> Self {
        let (database_url, dir) = match db {
            Db::Sqlite => {
                let (url, dir) = fresh_sqlite_url();
                (url, Some(dir))
            }
            Db::Postgres => (fresh_postgres_url().await, None),
            Db::PostgresTls => (fresh_postgres_tls_url().await, None),
        };
        let mut config = project_service::Config::with_database_url(database_url);
        config.caller_keys = Some(service_runtime::testing::caller_keys());
        adjust(&mut config);
        let server = start_project_service(&config, SocketAddr::from(([127, 0, 0, 1], 0)));
        wait_for_port(server.addr).await;
        Self {
            server,
            config,
            _dir: dir,
        }
    }

    /// Starts it again on the same port and database after [`Server::stop`].
    pub async fn restart(&mut self) {
        self.server = start_project_service(&self.config, self.server.addr);
        wait_for_port(self.server.addr).await;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

fn start_project_service(config: &project_service::Config, addr: SocketAddr) -> Server {
    let config = config.clone();
    Server::start(addr, move |listener, shutdown| async move {
        project_service::run(config, listener, async {
            let _ = shutdown.await;
        })
        .await
    })
}

async fn wait_for_port(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server on {addr} did not come up");
}

/// A gateway configuration pointing at `project_url`, with HS256 auth and the default limits.
pub fn gateway_config(project_url: &str) -> Config {
    let mut config = Config::new(AuthConfig::hs256(SECRET));
    config.signing_key = Some(service_runtime::testing::signing_key().clone());
    config.workers = 2;
    config.services.project = project_url.to_string();
    // Nothing listens on port 1: the other services are "down" unless a test starts them.
    config.services.ai = "http://127.0.0.1:1".into();
    config.services.deploy = "http://127.0.0.1:1".into();
    config.services.sandbox = "http://127.0.0.1:1".into();
    config.max_body_bytes = 256 * 1024;
    config.database_url = secrecy::SecretString::from(format!(
        "sqlite://{}/autocrea-gateway-{}.db?mode=rwc",
        std::env::temp_dir().display(),
        uuid::Uuid::new_v4().simple()
    ));
    config
}

/// Limits high enough not to interfere with a test.
pub fn generous_limits() -> LimitsConfig {
    let high = "100000/1h".parse().unwrap();
    LimitsConfig {
        api: high,
        ai: high,
        deploy: high,
        sandbox: high,
        auth: high,
        integrations: high,
        redis_url: None,
        redis_failure: Default::default(),
        enabled: true,
    }
}

/// A running gateway and a client for it.
pub struct Gateway {
    pub server: Server,
    pub base: String,
    pub http: reqwest::Client,
}

impl Gateway {
    pub async fn start(config: Config) -> Self {
        let server = Server::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            move |listener, shutdown| {
                gateway::run(config, listener, async {
                    let _ = shutdown.await;
                })
            },
        );
        wait_for_port(server.addr).await;
        Self {
            base: format!("http://{}", server.addr),
            server,
            http: service_runtime::tls::http_client().build().unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A counter or gauge of the gateway's `/metrics`, summed over the series whose labels
    /// contain every one of `labels` (e.g. `status="403"`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn get(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(token(user))
    }

    pub fn post(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(token(user))
    }

    pub fn put(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http.put(self.url(path)).bearer_auth(token(user))
    }

    pub fn patch(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http.patch(self.url(path)).bearer_auth(token(user))
    }

    pub fn delete(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(token(user))
    }

    /// Creates a project for `user` and returns its JSON.
    pub async fn create_project(&self, user: &str, name: &str) -> serde_json::Value {
        let response = self
            .post("/api/projects", user)
            .json(&serde_json::json!({"name": name, "language": "typescript"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }
}

/// project-service and a gateway in front of it.
pub struct Stack {
    pub project: ProjectService,
    pub gateway: Gateway,
    /// The gateway's own database (API keys).
    pub gateway_database_url: secrecy::SecretString,
}

impl Stack {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, |c| c.limits = generous_limits()).await
    }

    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> Self {
        let project = ProjectService::start(db).await;
        let mut config = gateway_config(&project.url());
        adjust(&mut config);
        let gateway_database_url = config.database_url.clone();
        let gateway = Gateway::start(config).await;
        Self {
            project,
            gateway,
            gateway_database_url,
        }
    }
}

/// A valid development token for `user`.
pub fn token(user: &str) -> String {
    gateway::auth::issue_dev_token(SECRET, user, Duration::from_secs(600)).unwrap()
}

/// A user id no other test uses (Redis keeps budgets between runs).
pub fn unique_user(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Asserts an RFC 9457 body with the given status and returns it.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["requestId"], request_id);
    assert!(body["type"].as_str().unwrap().starts_with("https://"));
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

/// Runs a test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::helpers::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body($crate::helpers::Db::Postgres).await;
            }
        }
    };
}
