//! What every handler shares.

use service_runtime::identity::{AssertionSigner, SIGNING_KEY_VAR};

use crate::auth::Authenticator;
use crate::client_ip::ClientIpResolver;
use crate::config::Config;
use crate::downstream::Downstreams;
use crate::keys::ApiKeyStore;
use crate::limits::RateLimiter;

/// Shared state of the gateway, one per process.
#[derive(Debug)]
pub struct AppState {
    /// The configuration it started with.
    pub config: Config,
    /// Token verification.
    pub auth: Authenticator,
    /// Rate limits.
    pub limiter: RateLimiter,
    /// Service clients.
    pub downstream: Downstreams,
    /// Personal API keys.
    pub keys: ApiKeyStore,
    /// Who the client is behind trusted proxies.
    pub client_ip: ClientIpResolver,
    /// Event streams open now, per user, and their limits.
    pub streams: crate::sse::OpenStreams,
}

impl AppState {
    /// Builds the state: opens the key database (running its migrations); services are
    /// connected on first use.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        let http = service_runtime::tls::http_client()
            .connect_timeout(std::time::Duration::from_secs(3))
            .build()?;
        Ok(Self {
            auth: Authenticator::new(&config.auth, http)?,
            limiter: RateLimiter::new(&config.limits)?,
            downstream: Downstreams::new(&config.services, config.grpc, signer(&config)?)?,
            streams: crate::sse::OpenStreams::new(config.streams.clone()),
            keys: ApiKeyStore::connect(&config.database_url, config.db_max_connections).await?,
            client_ip: ClientIpResolver::new(
                config.edge.trusted_proxies.clone(),
                config.edge.forwarded_header,
            ),
            config,
        })
    }
}

/// The signer of caller assertions, from the configured key; the gateway does not start
/// without one, since every service refuses unsigned calls.
fn signer(config: &Config) -> anyhow::Result<AssertionSigner> {
    let key = config.signing_key.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "configuration error: {SIGNING_KEY_VAR}: must be set to the gateway's Ed25519 \
             private key (deploy/scripts/identity-keys.sh makes a pair): the services refuse \
             calls without an assertion signed with it"
        )
    })?;
    Ok(AssertionSigner::new(key))
}
