//! What every AutoCrea service shares, and nothing else: telemetry set-up, configuration from the
//! environment, graceful shutdown, gRPC serving and client channels, Prometheus metrics, signed
//! caller identity between the gateway and the services, SQL pools with embedded migrations on
//! SQLite or PostgreSQL and the classification of their failures, field validation errors, page
//! tokens, the retry policy of calls to outside services, the TLS crypto of every client (HTTP,
//! PostgreSQL, Redis), the Redis endpoint every service connects through, and a Redis connection
//! with bounded waits.

pub mod config;
pub mod db;
pub mod grpc;
pub mod grpc_observe;
pub mod identity;
pub mod invalid;
pub mod metrics;
pub mod page_token;
pub mod redis_client;
pub mod redis_endpoint;
pub mod retry;
pub mod shutdown;
#[cfg(any(test, feature = "testing"))]
pub mod span_recorder;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
