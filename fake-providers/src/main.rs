//! `fake-providers`: the Anthropic Messages API (JSON and SSE; ai-service's fake) and the Vercel
//! deployments API (upload by digest, create, QUEUED → BUILDING → READY one step per read) on two
//! ports, for the compose end-to-end stack. Credentials it accepts: `fake_providers::ai::KEY`
//! and `fake_providers::vercel::TOKEN`.
//!
//!   FAKE_ANTHROPIC_ADDR   default 0.0.0.0:9001 (ANTHROPIC_BASE_URL=http://<host>:9001)
//!   FAKE_VERCEL_ADDR      default 0.0.0.0:9002 (VERCEL_API_URL=http://<host>:9002); also answers
//!                         `GET /health`, the container's health check
//!
//! Runs until SIGTERM or Ctrl-C. State is in memory only.

use std::net::SocketAddr;

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use fake_providers::server::{FakeServer, Script};
use fake_providers::vercel::{self, VercelState};
use tokio::signal::unix::{SignalKind, signal};

fn listen_addr(variable: &str, default: &str) -> Result<SocketAddr, String> {
    let value = std::env::var(variable)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    value
        .trim()
        .parse()
        .map_err(|e| format!("{variable}: cannot parse {value:?} as host:port: {e}"))
}

/// The Vercel fake, plus the health check the fake itself does not have.
fn vercel_with_health(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut VercelState,
    script: &Script,
) -> HttpResponse {
    if req.path() == "/health" {
        return HttpResponse::Ok().body("ok");
    }
    vercel::handle(req, body, state, script)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let anthropic_addr = listen_addr("FAKE_ANTHROPIC_ADDR", "0.0.0.0:9001")?;
    let vercel_addr = listen_addr("FAKE_VERCEL_ADDR", "0.0.0.0:9002")?;

    let anthropic = tokio::net::TcpListener::bind(anthropic_addr)
        .await
        .map_err(|e| format!("FAKE_ANTHROPIC_ADDR: cannot listen on {anthropic_addr}: {e}"))?;
    let anthropic = fake_providers::ai::FakeProvider::start_on(anthropic);
    let vercel = std::net::TcpListener::bind(vercel_addr)
        .map_err(|e| format!("FAKE_VERCEL_ADDR: cannot listen on {vercel_addr}: {e}"))?;
    let vercel = FakeServer::start_on(vercel, VercelState::default(), vercel_with_health);
    eprintln!(
        "fake-providers: Anthropic Messages API on {}, Vercel API on {}",
        anthropic.addr, vercel.addr
    );

    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!(
        "fake-providers: stopping ({} Anthropic calls, {} Vercel requests served)",
        anthropic.calls(),
        vercel.requests().len()
    );
    Ok(())
}
