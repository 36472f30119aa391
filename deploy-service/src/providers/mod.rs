//! Clients of the hosting providers' HTTP APIs, behind one [`Providers`] value that the engine
//! calls by [`Provider`].

mod http;
mod netlify;
mod railway;
mod vercel;

use std::time::Duration;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::config::Config;
use crate::error::Error;
use crate::model::{EnvVars, Provider, Target};

pub use netlify::NetlifyClient;
pub use railway::RailwayClient;
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
}

/// The provider clients that have credentials, and what is missing for the others.
#[derive(Debug, Clone)]
pub struct Providers {
    vercel: Option<VercelClient>,
    netlify: Option<NetlifyClient>,
    railway: Option<RailwayClient>,
    missing: Vec<(Provider, Vec<&'static str>)>,
}

impl Providers {
    /// Builds a client for every provider whose credentials are configured.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let client = service_runtime::tls::http_client()
            .user_agent(concat!(
                "autocrea-deploy-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(config.retry.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let mut missing = Vec::new();

        let vercel = match &config.vercel.token {
            Some(token) => Some(VercelClient::new(
                http::HttpCaller::new(client.clone(), config.retry, Provider::Vercel),
                &config.vercel.api_url,
                token.clone(),
                config.vercel.team_id.clone(),
            )),
            None => {
                missing.push((Provider::Vercel, vec!["VERCEL_TOKEN"]));
                None
            }
        };
        let netlify = match &config.netlify.token {
            Some(token) => Some(NetlifyClient::new(
                http::HttpCaller::new(client.clone(), config.retry, Provider::Netlify),
                &config.netlify.api_url,
                token.clone(),
            )?),
            None => {
                missing.push((Provider::Netlify, vec!["NETLIFY_AUTH_TOKEN"]));
                None
            }
        };
        let railway_config = &config.railway;
        let mut railway_missing = Vec::new();
        if railway_config.token.is_none() && railway_config.api_token.is_none() {
            railway_missing.push("RAILWAY_TOKEN");
        }
        if railway_config.environment_id.is_none() {
            railway_missing.push("RAILWAY_ENVIRONMENT_ID");
        }
        if railway_config.service_id.is_none() {
            railway_missing.push("RAILWAY_SERVICE_ID");
        }
        let railway = if railway_missing.is_empty() {
            Some(RailwayClient::new(
                http::HttpCaller::new(client, config.retry, Provider::Railway),
                railway_config,
            ))
        } else {
            missing.push((Provider::Railway, railway_missing));
            None
        };
        Ok(Self {
            vercel,
            netlify,
            railway,
            missing,
        })
    }

    /// Refuses a deployment that could not be sent: credentials or ids unset (naming the
    /// variables), or variables for Railway without `RAILWAY_PROJECT_ID`.
    pub fn check(&self, provider: Provider, env: &EnvVars) -> Result<(), Error> {
        if let Some((_, variables)) = self.missing.iter().find(|(p, _)| *p == provider) {
            return Err(Error::MissingCredentials {
                provider,
                variables: variables.clone(),
            });
        }
        if provider == Provider::Railway
            && !env.is_empty()
            && self
                .railway
                .as_ref()
                .is_some_and(|r| !r.can_set_variables())
        {
            return Err(Error::MissingCredentials {
                provider,
                variables: vec!["RAILWAY_PROJECT_ID"],
            });
        }
        Ok(())
    }

    /// The Vercel client.
    pub fn vercel(&self) -> Result<&VercelClient, ProviderError> {
        self.vercel
            .as_ref()
            .ok_or_else(|| unconfigured(Provider::Vercel))
    }

    /// The Netlify client.
    pub fn netlify(&self) -> Result<&NetlifyClient, ProviderError> {
        self.netlify
            .as_ref()
            .ok_or_else(|| unconfigured(Provider::Netlify))
    }

    /// The Railway client.
    pub fn railway(&self) -> Result<&RailwayClient, ProviderError> {
        self.railway
            .as_ref()
            .ok_or_else(|| unconfigured(Provider::Railway))
    }

    /// Reads the state of deployment `id`.
    pub async fn status(
        &self,
        provider: Provider,
        id: &str,
    ) -> Result<RemoteStatus, ProviderError> {
        match provider {
            Provider::Vercel => self.vercel()?.status(id).await,
            Provider::Netlify => self.netlify()?.status(id).await,
            Provider::Railway => self.railway()?.status(id).await,
        }
    }

    /// Asks the provider to stop deployment `id`.
    pub async fn cancel(&self, provider: Provider, id: &str) -> Result<(), ProviderError> {
        match provider {
            Provider::Vercel => self.vercel()?.cancel(id).await,
            Provider::Netlify => self.netlify()?.cancel(id).await,
            Provider::Railway => self.railway()?.cancel(id).await,
        }
    }

    /// Makes the earlier deployment `previous` (of `site`) live again.
    pub async fn rollback(
        &self,
        provider: Provider,
        site: Option<&str>,
        previous: &str,
        target: Target,
    ) -> Result<Submitted, ProviderError> {
        match provider {
            Provider::Vercel => {
                let name = site.ok_or_else(|| missing_site(provider))?;
                self.vercel()?.redeploy(name, previous, target).await
            }
            Provider::Netlify => {
                let site = site.ok_or_else(|| missing_site(provider))?;
                self.netlify()?.restore(site, previous).await
            }
            Provider::Railway => self.railway()?.rollback(previous).await,
        }
    }
}

/// Credentials disappeared between the check and the work (a restart with another
/// configuration): the deployment fails with the variable to set.
fn unconfigured(provider: Provider) -> ProviderError {
    ProviderError::Rejected {
        provider,
        what: "configuration".to_string(),
        status: 0,
        message: format!("credentials for {provider} are not configured on this server"),
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
