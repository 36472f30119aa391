//! Starting the real ai-service against the fake provider, and talking to it over gRPC.

pub use service_runtime::testing::as_user;
use std::time::Duration;

use ai_service::{Config, ProviderConfig, RetryPolicy, Timeouts};
use autocrea_proto::ai::v1 as pb;
use autocrea_proto::ai::v1::ai_service_client::AiServiceClient;
use pb::generate_stream_event::Event as GenEvent;
use service_runtime::testing::{TempDir, fresh_sqlite_url};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::fake_provider::{FakeProvider, KEY};

/// The user every test calls as, unless it says otherwise.
pub const USER: &str = "user-1";

/// A running ai-service with its own database.
pub struct TestApp {
    pub client: AiServiceClient<Channel>,
    pub addr: std::net::SocketAddr,
    _shutdown: oneshot::Sender<()>,
    _data: Option<TempDir>,
}

/// Retries and timeouts short enough for tests, long enough to be stable on a busy machine.
pub fn fast(mut provider: ProviderConfig) -> ProviderConfig {
    provider.retry = RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(10),
    };
    provider.timeouts = Timeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_millis(500),
        total: Duration::from_secs(10),
    };
    provider
}

/// Anthropic at the fake, with the key it accepts.
pub fn anthropic(fake: &FakeProvider) -> ProviderConfig {
    fast(ProviderConfig::anthropic(fake.url(), KEY))
}

/// OpenAI-compatible at the fake (with a trailing `/v1`, as people paste it).
pub fn openai(fake: &FakeProvider) -> ProviderConfig {
    fast(ProviderConfig::openai(
        format!("{}/v1", fake.url()),
        Some(KEY.to_string()),
    ))
}

/// A configuration with a fresh SQLite ledger and `provider`.
pub fn sqlite_config(provider: Option<ProviderConfig>) -> (Config, TempDir) {
    let (url, dir) = fresh_sqlite_url();
    let mut config = Config::new(url);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    config.provider = provider;
    (config, dir)
}

/// Starts ai-service with `config` on a free port.
pub async fn spawn(mut config: Config, data: Option<TempDir>) -> TestApp {
    // Every suite's server checks callers against the suites' key.
    config
        .caller_keys
        .get_or_insert_with(service_runtime::testing::caller_keys);
    // Console output only here, so the guard has nothing to flush.
    let _ = service_runtime::telemetry::init("ai-service-tests");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        ai_service::run(config, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("ai-service runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect to ai-service");
    TestApp {
        client: AiServiceClient::new(channel),
        addr,
        _shutdown: tx,
        _data: data,
    }
}

/// Starts ai-service on SQLite against `provider`.
pub async fn spawn_with(provider: Option<ProviderConfig>) -> TestApp {
    let (config, dir) = sqlite_config(provider);
    spawn(config, Some(dir)).await
}

/// A request from [`USER`].
pub fn req<T>(message: T) -> tonic::Request<T> {
    as_user(USER, message)
}

/// A metadata value as text.
pub fn meta<'a>(map: &'a tonic::metadata::MetadataMap, key: &str) -> Option<&'a str> {
    map.get(key).and_then(|v| v.to_str().ok())
}

impl TestApp {
    /// `user`'s usage report.
    pub async fn usage(&mut self, user: &str) -> pb::GetUsageResponse {
        self.client
            .get_usage(as_user(user, pb::GetUsageRequest {}))
            .await
            .expect("usage")
            .into_inner()
    }

    /// Opens a generate stream and reads it to its end.
    pub async fn generate_stream(&mut self, request: pb::GenerateRequest) -> Vec<GenEvent> {
        let mut stream = self
            .client
            .generate_stream(req(request))
            .await
            .expect("stream opens")
            .into_inner();
        let mut events = Vec::new();
        while let Some(e) = stream.message().await.expect("stream message") {
            events.push(e.event.expect("event set"));
        }
        events
    }
}

/// A generate request for Python.
pub fn generate(prompt: &str) -> pb::GenerateRequest {
    pb::GenerateRequest {
        prompt: prompt.into(),
        language: "python".into(),
        framework: None,
    }
}

/// A one-message chat.
pub fn chat(content: &str) -> pb::ChatRequest {
    pb::ChatRequest {
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: content.into(),
        }],
        project_id: None,
    }
}
