//! Stand-ins for the outside providers AutoCrea talks to, each an HTTP server speaking that
//! provider's documented API closely enough for the platform's real clients:
//!
//! - [`vercel`], [`netlify`], [`railway`]: the deploy providers, on the shared [`server`] (request
//!   record, scripted failures, a "hold" switch for deployments). deploy-service's test suite
//!   starts them on loopback ports.
//! - [`ai`]: the Anthropic Messages and OpenAI chat-completions APIs (JSON and SSE, scripted
//!   failures), for ai-service's and the gateway's suites; the `fake-providers` binary serves it
//!   next to the Vercel fake for the compose end-to-end stack (`docker-compose.ci.yml`).

pub mod ai;
pub mod netlify;
pub mod railway;
pub mod server;
pub mod vercel;
