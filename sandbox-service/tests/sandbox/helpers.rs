//! One way to start the real service for a test: on 127.0.0.1:0, against the real Docker engine,
//! with its own instance name so that its containers can be counted and swept.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use autocrea_proto::sandbox::v1::sandbox_service_client::SandboxServiceClient;
use autocrea_proto::sandbox::v1::{ExecuteRequest, ExecuteResponse, SourceFile};
use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use sandbox_service::Config;
use sandbox_service::engine::OWNER_LABEL;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::transport::Channel;

/// User id the tests call as.
pub const USER: &str = "user_test";

/// A running sandbox-service.
pub struct TestApp {
    /// Client connected to it.
    pub client: SandboxServiceClient<Channel>,
    /// Its gRPC channel (for the health client).
    pub channel: Channel,
    /// Its instance name (container owner label).
    pub instance: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A config for tests: instance named after the test (a crashed earlier run's containers are
/// swept at start), no pool, short limits.
pub fn test_config(instance: &str) -> Config {
    Config {
        instance: format!("test-{instance}"),
        pool_size: 0,
        max_concurrent_runs: 4,
        queue_limit: 32,
        caller_keys: Some(service_runtime::testing::caller_keys()),
        ..Config::default()
    }
}

/// Starts the service with `config` after making sure Docker answers and the image exists.
pub async fn spawn_app(config: Config) -> TestApp {
    if config.docker_host.is_none() {
        ensure_docker_and_image().await;
    }
    let instance = config.instance.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(sandbox_service::run(config, listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the test server");
    TestApp {
        client: SandboxServiceClient::new(channel.clone()),
        channel,
        instance,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    /// Runs `request` and returns its result, panicking on a gRPC error.
    pub async fn execute(&self, request: ExecuteRequest) -> ExecuteResponse {
        self.client
            .clone()
            .execute(authed(request))
            .await
            .unwrap_or_else(|status| panic!("execute failed: {status:?}"))
            .into_inner()
    }

    /// Shuts the service down and checks that none of its containers remain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ended with an error");
        }
        let left = owned_containers(&self.instance).await;
        assert!(
            left.is_empty(),
            "containers of {} left after shutdown: {left:?}",
            self.instance
        );
    }
}

/// `message` with the caller identity the service requires (an assertion signed as the gateway
/// signs).
pub fn authed<T>(message: T) -> Request<T> {
    service_runtime::testing::as_user(USER, message)
}

/// A request running `code` in `language`.
pub fn code(language: &str, code: &str) -> ExecuteRequest {
    ExecuteRequest {
        language: language.into(),
        code: code.into(),
        ..Default::default()
    }
}

/// A source file.
pub fn file(name: &str, content: &str) -> SourceFile {
    SourceFile {
        name: name.into(),
        content: content.into(),
    }
}

/// The Docker engine of the test machine.
pub fn docker() -> Docker {
    Docker::connect_with_defaults().expect("Docker client configuration")
}

/// Ids of the containers (any state) labelled with `instance`.
pub async fn owned_containers(instance: &str) -> Vec<String> {
    let filters = HashMap::from([("label", vec![format!("{OWNER_LABEL}={instance}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker()
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Waits until `instance` owns exactly `n` containers.
pub async fn wait_for_containers(instance: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ids = owned_containers(instance).await;
        if ids.len() == n {
            return ids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{instance} owns {} containers, expected {n}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails the suite with a clear message when no Docker engine answers, and builds the runtime
/// image once when it is missing (the build script returns at once when it exists).
pub async fn ensure_docker_and_image() {
    static IMAGE: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = docker().ping().await {
        panic!(
            "these tests need a running Docker engine (DOCKER_HOST or /var/run/docker.sock): {e}"
        );
    }
    let built = tokio::task::spawn_blocking(|| {
        IMAGE
            .get_or_init(|| {
                let script = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../deploy/sandbox/build-images.sh"
                );
                let out = std::process::Command::new("bash")
                    .arg(script)
                    .output()
                    .map_err(|e| format!("cannot run {script}: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{script} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ))
                }
            })
            .clone()
    })
    .await
    .unwrap();
    if let Err(e) = built {
        panic!("the sandbox runtime image cannot be built: {e}");
    }
}
