//! Gateway integration tests: HTTP over sockets to the real gateway, gRPC to the real
//! project-service, SQLite and PostgreSQL, Redis for the shared limiter, and both over TLS.

mod ai;
mod auth;
mod availability;
mod browser;
mod deploy;
mod edge;
mod faults;
mod helpers;
mod input;
mod keys;
mod limits;
mod methods;
mod observability;
mod projects;
mod sandbox;
mod streams;
mod tls;
