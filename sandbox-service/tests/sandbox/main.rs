//! sandbox-service over the wire, against the real Docker engine and runtime image.

mod abuse;
mod basics;
mod concurrency;
mod helpers;
mod lifecycle;
mod spans;
mod tls_engine;
mod validation;
