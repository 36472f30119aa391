//! Gateway integration tests: HTTP over sockets to the real gateway, gRPC to the real
//! project-service, SQLite and PostgreSQL, Redis for the shared limiter.

mod auth;
mod availability;
mod helpers;
mod input;
mod limits;
mod projects;
