//! gRPC serving and client channels, and the metadata every call carries.
//!
//! The gateway authenticates the user and passes the user id to services in [`USER_ID`]; services
//! read it back with [`caller`] and scope every read and write to it.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Status};

/// Metadata key holding the authenticated user id.
pub const USER_ID: &str = "x-user-id";
/// Metadata key holding the request id assigned by the gateway.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest user id accepted in metadata.
const MAX_USER_ID_LEN: usize = 256;

/// Largest gRPC message the services and clients accept (project exports carry whole projects).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The authenticated caller of a gRPC request, as the gateway vouched for it.
pub fn caller<T>(request: &Request<T>) -> Result<String, Status> {
    let value = request
        .metadata()
        .get(USER_ID)
        .ok_or_else(|| Status::unauthenticated("missing caller identity (x-user-id metadata)"))?;
    let id = value
        .to_str()
        .map_err(|_| Status::unauthenticated("caller identity is not ASCII"))?;
    if id.is_empty() || id.len() > MAX_USER_ID_LEN {
        return Err(Status::unauthenticated(
            "caller identity is empty or too long",
        ));
    }
    Ok(id.to_string())
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
/// gRPC metrics ([`crate::grpc_observe`]).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
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
    fn caller_requires_identity() {
        let request = Request::new(());
        assert_eq!(
            caller(&request).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(USER_ID, "user_1".parse().unwrap());
        assert_eq!(caller(&request).unwrap(), "user_1");
    }
}
