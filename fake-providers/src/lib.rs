//! Stand-ins for the outside providers AutoCrea talks to, each an HTTP server speaking that
//! provider's documented API closely enough for the platform's real clients:
//!
//! - [`vercel`], [`netlify`], [`railway`]: the deploy providers, on the shared [`server`] (request
//!   record, scripted failures, a "hold" switch for deployments). deploy-service's test suite
//!   starts them on loopback ports.
//! - The Anthropic Messages API is ai-service's own fake (`ai_service::testing`, feature
//!   `testing`); the `fake-providers` binary serves it next to the Vercel fake for the compose
//!   end-to-end stack (`docker-compose.ci.yml`).

pub mod netlify;
pub mod railway;
pub mod server;
pub mod vercel;
