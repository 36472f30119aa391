//! Clients of the hosting providers' HTTP APIs, behind one [`Providers`] value that the engine
//! calls by [`Provider`].

mod http;
mod netlify;
mod railway;
mod tarball;
mod vercel;

use std::time::Duration;

use bytes::Bytes;
use secrecy::SecretString;
use sha1::{Digest, Sha1};

use crate::config::{Config, RetryPolicy};
use crate::model::{Provider, Target};

pub use netlify::NetlifyClient;
pub use railway::RailwayClient;
pub use tarball::tarball;
pub use vercel::VercelClient;

/// A provider call that failed; the text is what users read as the deployment's error, so it
/// says what was attempted and why it failed, and never carries a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No answer after every retry (connection refused, reset, timeout).
    #[error("could not reach {provider} ({what}): {reason}")]
    Unreachable {
        /// The provider.
        provider: Provider,
        /// The operation.
        what: String,
        /// The network error.
        reason: String,
    },
    /// The provider kept failing with 5xx.
    #[error("{provider} failed ({what}): HTTP {status}: {message}")]
    ServerError {
        /// The provider.
        provider: Provider,
        /// The operation.
        what: String,
        /// The last status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The provider's rate limit did not reset in time.
    #[error("{provider} rate limit reached ({what}){}", match retry_after_secs {
        Some(secs) => format!("; it resets in {secs} s"),
        None => String::new(),
    })]
    RateLimited {
        /// The provider.
        provider: Provider,
        /// The operation.
        what: String,
        /// When it resets, if known.
        retry_after_secs: Option<u64>,
    },
    /// The provider refused the request (4xx, GraphQL errors): bad token, unknown project, …
    #[error("{provider} rejected the request ({what}): HTTP {status}: {message}")]
    Rejected {
        /// The provider.
        provider: Provider,
        /// The operation.
        what: String,
        /// HTTP status (200 for GraphQL errors).
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The provider answered something we do not understand.
    #[error("unexpected answer from {provider} ({what}): {message}")]
    Protocol {
        /// The provider.
        provider: Provider,
        /// The operation.
        what: String,
        /// What was wrong with it.
        message: String,
    },
}

impl ProviderError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::ServerError { .. } | Self::RateLimited { .. }
        )
    }
}

/// One file to ship.
#[derive(Debug, Clone)]
pub struct DeployFile {
    /// Path inside the project, without a leading `/`.
    pub path: String,
    /// The bytes.
    pub content: Bytes,
    /// Lower-case hex SHA-1 of the content (the digest Vercel and Netlify address files by).
    pub sha1: String,
}

impl DeployFile {
    /// A file with its digest computed.
    pub fn new(path: impl Into<String>, content: Bytes) -> Self {
        let sha1 = hex::encode(Sha1::digest(&content));
        Self {
            path: path.into().trim_start_matches('/').to_string(),
            content,
            sha1,
        }
    }
}

/// What the provider said when it accepted a deployment.
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    /// The provider's deployment id.
    pub deployment_id: String,
    /// The provider's site/project the deployment belongs to, where it has one.
    pub site_id: Option<String>,
    /// The URL, when already known.
    pub url: Option<String>,
}

/// How the provider sees a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    /// Still going; the provider's own state name.
    InProgress(String),
    /// Held at the provider until something happens there (Vercel `BLOCKED`, Railway
    /// `NEEDS_APPROVAL`, `WAITING`): not failed, not progressing by itself; what it waits for.
    Waiting(String),
    /// Live.
    Ready,
    /// Failed, with the provider's reason.
    Failed(String),
    /// Canceled or removed at the provider.
    Canceled,
}

/// A status read.
#[derive(Debug, Clone)]
pub struct RemoteStatus {
    /// The state.
    pub state: RemoteState,
    /// The provider's raw state name, for the event log.
    pub raw: String,
    /// The URL, when known.
    pub url: Option<String>,
    /// Something people should know about a ready deployment (Railway `SLEEPING`).
    pub note: Option<String>,
}

/// What provider calls act with: a token and its scoping. Built from the owner's connection
/// (or the operator's account), never kept longer than one step.
#[derive(Clone)]
pub struct Credentials {
    /// The token.
    pub token: SecretString,
    /// Vercel: the team (`?teamId=`).
    pub team_id: Option<String>,
    /// Railway: the project services are created in.
    pub project_id: Option<String>,
    /// Railway: the environment deployed to.
    pub environment_id: Option<String>,
}

impl Credentials {
    /// A bare token.
    pub fn token(token: SecretString) -> Self {
        Self {
            token,
            team_id: None,
            project_id: None,
            environment_id: None,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("team_id", &self.team_id)
            .field("project_id", &self.project_id)
            .field("environment_id", &self.environment_id)
            .finish_non_exhaustive()
    }
}

/// A project's home at a provider, as the clients use it.
#[derive(Debug, Clone)]
pub struct Home {
    /// Vercel project id, Netlify site id, Railway service id.
    pub id: String,
    /// Its name at the provider.
    pub name: String,
}

/// An account as the provider reports it when a token is verified.
#[derive(Debug, Clone)]
pub struct VerifiedAccount {
    /// The account's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Railway: the project and environment resolved from the request.
    pub project_id: Option<String>,
    /// Railway: the environment.
    pub environment_id: Option<String>,
}

/// Makes a client of each provider for given credentials, and holds the operator's accounts
/// that `DEPLOY_PLATFORM_ACCOUNTS` opts in.
#[derive(Debug, Clone)]
pub struct Providers {
    client: reqwest::Client,
    retry: RetryPolicy,
    vercel: String,
    netlify: reqwest::Url,
    railway: String,
    platform: Vec<(Provider, Credentials)>,
}

impl Providers {
    /// Clients over one HTTP connection pool.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let client = service_runtime::tls::http_client()
            .user_agent(concat!(
                "autocrea-deploy-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(config.retry.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let mut platform = Vec::new();
        for provider in &config.platform_accounts {
            let credentials = match provider {
                Provider::Vercel => config.vercel.token.clone().map(|token| Credentials {
                    team_id: config.vercel.team_id.clone(),
                    ..Credentials::token(token)
                }),
                Provider::Netlify => config.netlify.token.clone().map(Credentials::token),
                Provider::Railway => None,
            };
            if let Some(credentials) = credentials {
                platform.push((*provider, credentials));
            }
        }
        Ok(Self {
            client,
            retry: config.retry,
            vercel: config.vercel.api_url.clone(),
            netlify: reqwest::Url::parse(config.netlify.api_url.trim_end_matches('/'))?,
            railway: config.railway.api_url.clone(),
            platform,
        })
    }

    fn caller(&self, provider: Provider, retry: RetryPolicy) -> http::HttpCaller {
        http::HttpCaller::new(self.client.clone(), retry, provider)
    }

    /// The operator's account for `provider`, when opted in.
    pub fn platform(&self, provider: Provider) -> Option<Credentials> {
        self.platform
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, c)| c.clone())
    }

    /// A Vercel client acting with `credentials`.
    pub fn vercel(&self, credentials: &Credentials) -> VercelClient {
        self.vercel_with(credentials, self.retry)
    }

    fn vercel_with(&self, credentials: &Credentials, retry: RetryPolicy) -> VercelClient {
        let caller = self.caller(Provider::Vercel, retry);
        VercelClient::new(caller, &self.vercel, credentials)
    }

    /// A Netlify client acting with `credentials`.
    pub fn netlify(&self, credentials: &Credentials) -> NetlifyClient {
        self.netlify_with(credentials, self.retry)
    }

    fn netlify_with(&self, credentials: &Credentials, retry: RetryPolicy) -> NetlifyClient {
        let caller = self.caller(Provider::Netlify, retry);
        NetlifyClient::new(caller, self.netlify.clone(), credentials)
    }

    /// A Railway client acting with `credentials`.
    pub fn railway(&self, credentials: &Credentials) -> RailwayClient {
        self.railway_with(credentials, self.retry)
    }

    fn railway_with(&self, credentials: &Credentials, retry: RetryPolicy) -> RailwayClient {
        let caller = self.caller(Provider::Railway, retry);
        RailwayClient::new(caller, &self.railway, credentials)
    }

    /// Checks a token with the provider and returns the account it belongs to (for Railway,
    /// also the project and environment deployments will use, creating the project in
    /// `workspace` when no project is given).
    pub async fn verify(
        &self,
        provider: Provider,
        credentials: &Credentials,
        workspace: Option<&str>,
    ) -> Result<VerifiedAccount, ProviderError> {
        // Someone is waiting for the answer: one attempt, no back-off; an unreachable provider is
        // a 503 they can retry.
        let once = RetryPolicy {
            attempts: 1,
            ..self.retry
        };
        match provider {
            Provider::Vercel => self.vercel_with(credentials, once).whoami().await,
            Provider::Netlify => self.netlify_with(credentials, once).whoami().await,
            Provider::Railway => self.railway_with(credentials, once).whoami(workspace).await,
        }
    }

    /// Reads the state of deployment `id`.
    pub async fn status(
        &self,
        provider: Provider,
        credentials: &Credentials,
        id: &str,
        target: Target,
    ) -> Result<RemoteStatus, ProviderError> {
        match provider {
            Provider::Vercel => self.vercel(credentials).status(id).await,
            Provider::Netlify => self.netlify(credentials).status(id, target).await,
            Provider::Railway => self.railway(credentials).status(id).await,
        }
    }

    /// Asks the provider to stop deployment `id`.
    pub async fn cancel(
        &self,
        provider: Provider,
        credentials: &Credentials,
        id: &str,
    ) -> Result<(), ProviderError> {
        match provider {
            Provider::Vercel => self.vercel(credentials).cancel(id).await,
            Provider::Netlify => self.netlify(credentials).cancel(id).await,
            Provider::Railway => self.railway(credentials).cancel(id).await,
        }
    }

    /// Makes the earlier deployment `previous` (of `site`) live again.
    pub async fn rollback(
        &self,
        provider: Provider,
        credentials: &Credentials,
        site: Option<&str>,
        previous: &str,
        target: Target,
    ) -> Result<Submitted, ProviderError> {
        let site = site.ok_or_else(|| missing_site(provider))?;
        match provider {
            Provider::Vercel => {
                self.vercel(credentials)
                    .redeploy(site, previous, target)
                    .await
            }
            Provider::Netlify => self.netlify(credentials).restore(site, previous).await,
            Provider::Railway => self.railway(credentials).rollback(site, previous).await,
        }
    }
}

fn missing_site(provider: Provider) -> ProviderError {
    ProviderError::Protocol {
        provider,
        what: "rollback".to_string(),
        message: "the earlier deployment has no site/project id recorded".to_string(),
    }
}

/// `https://` in front of a bare host name (Vercel and Railway report host names).
pub(crate) fn with_scheme(url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("https://{url}")
    }
}
