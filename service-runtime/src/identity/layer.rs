//! Where assertions are attached and checked: [`SignedChannel`] on the gateway's clients mints
//! one per call, [`VerifyLayer`] on every service's server verifies it before any method runs.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::server::TcpConnectInfo;

use super::{
    ASSERTION, ASSERTION_LIFETIME, AssertionSigner, CallerVerifier, Claims, GRANT, ISSUER, Refusal,
    audience, now_secs,
};
use crate::grpc_observe::TracedChannel;

/// Who a gateway call is made for: put in a `tonic::Request`'s extensions, read by
/// [`SignedChannel`], which mints the assertion for the channel's service from it.
#[derive(Debug, Clone, Default)]
pub struct OnBehalfOf {
    /// The user id.
    pub user_id: String,
    /// How the user authenticated (`jwt`, `api_key`).
    pub auth_method: String,
    /// The scopes of the user's credential.
    pub scopes: Vec<String>,
    /// The gateway's request id.
    pub request_id: Option<String>,
    /// Services the target calls in turn for the user with the forwarded assertion
    /// (project-service, for an operation that reads a project's files).
    pub also_for: Vec<&'static str>,
    /// A grant to read this project's files for this long, for work that outlives the call.
    pub files_grant: Option<(String, Duration)>,
}

impl OnBehalfOf {
    pub(crate) fn claims(
        &self,
        audiences: &[&str],
        lifetime: Duration,
        project: Option<String>,
    ) -> Claims {
        let now = now_secs();
        Claims {
            iss: ISSUER.to_string(),
            sub: self.user_id.clone(),
            aud: audiences.iter().map(|a| a.to_string()).collect(),
            iat: now,
            exp: now + lifetime.as_secs(),
            amr: self.auth_method.clone(),
            scopes: self.scopes.clone(),
            rid: self.request_id.clone(),
            project,
        }
    }
}

/// A client channel to one service that signs an assertion addressed to it for every call whose
/// request carries an [`OnBehalfOf`] (health checks carry none and need none).
#[derive(Debug, Clone)]
pub struct SignedChannel {
    inner: TracedChannel,
    signer: AssertionSigner,
    audience: &'static str,
}

impl SignedChannel {
    /// `inner`, whose calls go to the service named `audience`, signed by `signer`.
    pub fn new(inner: TracedChannel, signer: AssertionSigner, audience: &'static str) -> Self {
        Self {
            inner,
            signer,
            audience,
        }
    }

    fn sign(&self, who: &OnBehalfOf, headers: &mut http::HeaderMap) {
        let mut audiences = vec![self.audience];
        audiences.extend(who.also_for.iter().copied());
        let assertion = self
            .signer
            .sign(&who.claims(&audiences, ASSERTION_LIFETIME, None));
        insert(headers, ASSERTION, assertion);
        if let Some((project, lifetime)) = &who.files_grant {
            let grant = self.signer.sign(&who.claims(
                &[audience::PROJECT],
                *lifetime,
                Some(project.clone()),
            ));
            insert(headers, GRANT, grant);
        }
    }
}

fn insert(
    headers: &mut http::HeaderMap,
    key: &'static str,
    token: Result<String, jsonwebtoken::errors::Error>,
) {
    // Signing fails only with an unusable key, which start-up already tried; the service then
    // refuses the call as unauthenticated, which says what is missing.
    match token.map(|t| http::HeaderValue::try_from(t).map_err(|e| e.to_string())) {
        Ok(Ok(value)) => {
            headers.insert(key, value);
        }
        Ok(Err(e)) => tracing::error!(error = %e, "a signed assertion is not a header value"),
        Err(e) => tracing::error!(error = %e, "cannot sign the caller assertion"),
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for SignedChannel {
    type Response = <TracedChannel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <TracedChannel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <TracedChannel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(who) = request.extensions_mut().remove::<OnBehalfOf>() {
            self.sign(&who, request.headers_mut());
        }
        self.inner.call(request)
    }
}

/// The tower layer [`crate::grpc::serve`] puts in front of every service's methods: it verifies
/// the caller assertion and puts the [`super::Caller`] in the request's extensions, or answers
/// `UNAUTHENTICATED` itself. `grpc.health.v1` stays open.
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    verifier: CallerVerifier,
}

impl VerifyLayer {
    /// A layer admitting calls whose assertion `verifier` accepts.
    pub fn new(verifier: CallerVerifier) -> Self {
        Self { verifier }
    }
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Verify {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// A service wrapped by [`VerifyLayer`].
#[derive(Debug, Clone)]
pub struct Verify<S> {
    inner: S,
    verifier: CallerVerifier,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Verify<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(request));
        }
        let verified = match request.headers().get(ASSERTION) {
            None => Err(Refusal::Missing),
            Some(value) => value
                .to_str()
                .map_err(|_| Refusal::Invalid("not ASCII".into()))
                .and_then(|token| self.verifier.verify(token)),
        };
        match verified {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(refusal) => {
                let peer = request
                    .extensions()
                    .get::<TcpConnectInfo>()
                    .and_then(TcpConnectInfo::remote_addr)
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "unknown".to_string());
                tracing::warn!(
                    peer = %peer,
                    method = request.uri().path(),
                    service = self.verifier.audience(),
                    reason = %refusal,
                    "call refused: no valid caller assertion"
                );
                let status = tonic::Status::unauthenticated(refusal.to_string());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
