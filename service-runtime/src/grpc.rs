//! gRPC serving and client channels, and the metadata every call carries.
//!
//! The gateway authenticates the user and sends each service a signed assertion of who the user
//! is ([`crate::identity`]); [`serve`] verifies it before any method runs, and services read the
//! verified user back with [`caller`] and scope every read and write to it.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Status};

use crate::identity::{Caller, CallerVerifier, Refusal, VerifyLayer};

/// Metadata key holding the request id assigned by the gateway.
pub const REQUEST_ID: &str = "x-request-id";

/// Largest gRPC message the services and clients accept (project exports carry whole projects).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The user a gRPC request is made for, as the gateway's assertion vouched for it (verified by
/// [`serve`]). A grant limited to one project's files is refused here: only the calls that read
/// those files accept one, through [`project_reader`].
pub fn caller<T>(request: &Request<T>) -> Result<String, Status> {
    let caller = verified_caller(request)?;
    if let Some(project) = &caller.project_grant {
        return Err(Status::permission_denied(format!(
            "this assertion only allows reading the files of project {project}"
        )));
    }
    Ok(caller.user_id.clone())
}

/// The user a request reading `project`'s files is made for: a caller's assertion, or a grant
/// for exactly that project.
pub fn project_reader<T>(request: &Request<T>, project: &str) -> Result<String, Status> {
    let caller = verified_caller(request)?;
    match &caller.project_grant {
        Some(granted) if granted != project => Err(Status::permission_denied(format!(
            "this assertion only allows reading the files of project {granted}"
        ))),
        _ => Ok(caller.user_id.clone()),
    }
}

/// The verified caller of a request, with the assertion to forward to another service.
pub fn verified_caller<T>(request: &Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .ok_or_else(|| Status::unauthenticated(Refusal::Missing.to_string()))
}

/// The request id of a gRPC request, when the gateway sent one.
pub fn request_id<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
}

/// Logs an unexpected error with its whole cause chain and returns an opaque `INTERNAL` status,
/// so that callers never see internals.
pub fn internal(error: anyhow::Error) -> Status {
    tracing::error!(error = format!("{error:#}"), "internal error");
    Status::internal("internal error; the service log has the details")
}

/// Serves `routes` plus `grpc.health.v1` on `listener` until `shutdown` resolves, then drains
/// in-flight calls. Every call gets a span continuing the caller's trace and is counted in the
/// gRPC metrics ([`crate::grpc_observe`]); every call but a health check must carry an assertion
/// that `verifier` accepts, or is refused `UNAUTHENTICATED` ([`crate::identity::VerifyLayer`]).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    verifier: CallerVerifier,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // `tcp_nodelay` on the builder only reaches sockets tonic accepts itself; ours come from the
    // caller's listener, so set it here. Without it a response's frames wait on Nagle plus the
    // peer's delayed ACK: tens of milliseconds on some calls.
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    });
    Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(crate::grpc_observe::ObserveLayer)
        .layer(VerifyLayer::new(verifier))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Timeouts of a client channel.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long a unary call may take until its response arrives.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A channel to `url` (`http://host:port`) that connects on first use and reconnects by itself
/// after the server comes back, failing calls fast (connect timeout) while it is down. Wrap it
/// in [`crate::grpc_observe::TracedChannel`] for a client span per call and trace context in
/// the metadata.
pub fn channel(url: &str, options: ClientOptions) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        // HTTP/2 flow control: data a caller has not consumed yet (an event stream whose HTTP
        // client stopped reading) holds its stream's window and, with it, part of the window of
        // the one connection every call to this service shares. A connection window far larger
        // than a stream window keeps a few stalled streams from stopping every other call.
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .connect_lazy())
}

/// HTTP/2 receive window of one call of a client channel.
const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
/// HTTP/2 receive window of a client channel's connection: 256 stalled calls' worth.
const CONNECTION_WINDOW_BYTES: u32 = 256 * STREAM_WINDOW_BYTES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_requires_a_verified_assertion() {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("x-user-id", "user_1".parse().unwrap());
        assert_eq!(
            caller(&request).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn a_grant_reads_only_its_project() {
        use crate::identity::{AssertionSigner, OnBehalfOf, SigningKey, VerifyingKeys, audience};
        let key = SigningKey::generate();
        let who = OnBehalfOf {
            user_id: "ann".into(),
            ..OnBehalfOf::default()
        };
        let claims = who.claims(
            &[audience::PROJECT],
            Duration::from_secs(60),
            Some("p1".into()),
        );
        let grant = AssertionSigner::new(&key).sign(&claims).unwrap();
        let verifier = CallerVerifier::new(
            &VerifyingKeys::from(key.verifying_key().clone()),
            audience::PROJECT,
        );
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(verifier.verify(&grant).unwrap());
        assert_eq!(project_reader(&request, "p1").unwrap(), "ann");
        assert_eq!(
            project_reader(&request, "p2").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            caller(&request).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
