//! ai-service integration tests: the real service on a loopback port, a fake AI provider
//! speaking the real wire formats, real SQLite / PostgreSQL / Redis.

mod budget;
mod cache;
use fake_providers::ai as fake_provider;
mod helpers;
mod operations;
mod redis_down;
mod retries;
mod streaming;
mod usage;
