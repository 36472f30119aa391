//! What the request being handled makes known to the code it runs, without passing it down every
//! call: its id (for error bodies and the metadata of gRPC calls), set by the request-id
//! middleware, and the cause of a 5xx answer, left for the request log line.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `future` as the handling of request `id`.
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The id of the request being handled, when called from within one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The cause of a 5xx answer, put in the response's extensions by [`crate::problem::ApiError`]
/// so that the request log line carries it.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);
