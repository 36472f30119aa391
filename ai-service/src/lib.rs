//! ai-service: generate, explain, fix, refactor and complete code, and chat, over an AI provider
//! (Anthropic Messages or OpenAI-compatible chat completions), streaming where it helps, with a
//! per-user usage ledger, an optional monthly token budget and a prompt cache.
//!
//! The gRPC contract, with its status-code conventions, is `proto/proto/ai.proto`.

use service_runtime::identity::{CallerVerifier, audience};
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use autocrea_proto::ai::v1::ai_service_server::AiServiceServer;
use service_runtime::db::Database;
use tokio::net::TcpListener;

pub mod assistant;
pub mod cache;
pub mod clock;
pub mod code;
pub mod config;
pub mod error;
pub mod language;
pub mod ledger;
pub mod metrics;
pub mod provider;
pub mod service;
pub mod task;

pub use config::{
    CacheConfig, CacheScope, Config, Limits, ProviderConfig, ProviderKind, RetryPolicy, Timeouts,
};
pub use error::{Error, Result};

/// Serves ai-service on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Checked first: a service never serves without a key to check its callers with.
    let verifier = CallerVerifier::required(config.caller_keys.as_ref(), audience::AI)?;
    let db = Database::open("ai", &config.database_url, 10, &ledger::MIGRATIONS).await?;
    let ledger = ledger::UsageLedger::new(db);
    let cache = cache::PromptCache::open(&config.cache, config.redis_url.as_ref()).await?;
    let provider = match config.provider {
        Some(p) => {
            tracing::info!(provider = p.kind.as_str(), model = %p.model, "AI provider configured");
            metrics::init(Some((p.kind.as_str(), &p.model)));
            Some(provider::ProviderClient::new(p).context("building the AI provider client")?)
        }
        None => {
            metrics::init(None);
            tracing::warn!(
                "no AI provider configured: AI calls answer FAILED_PRECONDITION until \
                 AI_PROVIDER and its key are set"
            );
            None
        }
    };
    let assistant = Arc::new(assistant::Assistant::new(
        provider,
        ledger,
        cache,
        config.limits,
        config.monthly_token_budget,
    ));
    let service = AiServiceServer::new(service::AiApi::new(assistant))
        .max_decoding_message_size(service_runtime::grpc::MAX_MESSAGE_SIZE);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<AiServiceServer<service::AiApi>>()
        .await;
    let routes = tonic::service::Routes::new(health).add_service(service);
    service_runtime::grpc::serve(listener, routes, verifier, shutdown).await?;
    Ok(())
}
