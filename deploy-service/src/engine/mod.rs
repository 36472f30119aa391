//! `DeployEngine`: the domain operations on deployments and the background poller that drives
//! each active deployment to a final state.
//!
//! The poller claims due deployments with a row lease (so with several replicas exactly one
//! works on a deployment at a time), does one step — send it to the provider, or read its
//! state —, commits the resulting change, and schedules the next look with back-off. Since all
//! of that lives in the table, a restarted process resumes where the last one stopped.

use std::sync::Arc;
use std::time::Duration;

use service_runtime::retry;
use tokio::sync::{Notify, Semaphore, broadcast, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::PollerConfig;
use crate::connections::{Connections, Opened};
use crate::error::{Error, Result};
use crate::model::{Account, EnvVars, State};
use crate::projects::ProjectFiles;
use crate::providers::{ProviderError, Providers, RemoteState, Submitted};
use crate::store::{Change, DeploymentRecord, DeploymentStore, NewDeployment, now_ms};

mod poller;
mod submit;

/// How many deployments one claim takes at most.
const CLAIM_BATCH: usize = 256;
/// How long shutdown waits for steps in flight before abandoning them (their leases are given
/// back either way, and an abandoned step is redone after restart).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Deployments: the store, the provider clients, project-service, and the poller.
#[derive(Debug)]
pub struct DeployEngine {
    store: DeploymentStore,
    connections: Connections,
    providers: Providers,
    projects: ProjectFiles,
    poller: PollerConfig,
    step_retry: retry::RetryPolicy,
    replica: String,
    wake: Notify,
    changes: broadcast::Sender<String>,
    /// Held while a project's home is created at a provider.
    creating_home: tokio::sync::Mutex<()>,
}

/// What a step decided about the next look at a deployment.
enum Next {
    /// Final (or no longer ours to follow).
    Done,
    /// Still in progress at the provider: read again after the poll interval.
    Poll,
    /// Failed for a reason that may pass (project-service down): try again with back-off.
    Retry(String),
}

/// Why a step could not go on.
enum StepFailure {
    /// The deployment fails with this text.
    Fail(String),
    /// Try again later; the text becomes the error if it keeps happening.
    Retry(String),
    /// Unexpected (database); logged and retried.
    Internal(Error),
}

impl From<Error> for StepFailure {
    fn from(error: Error) -> Self {
        match error {
            Error::Provider(e) => Self::Fail(e.to_string()),
            Error::ProjectNotFound => {
                Self::Fail("the project no longer exists or is not yours".to_string())
            }
            Error::ProjectAccessRefused(reason) => Self::Fail(format!(
                "the permission to read the project files was refused ({reason}); deploy again"
            )),
            Error::ProjectServiceUnavailable(reason) => {
                Self::Retry(format!("cannot read the project files: {reason}"))
            }
            other => Self::Internal(other),
        }
    }
}

impl From<ProviderError> for StepFailure {
    fn from(error: ProviderError) -> Self {
        Self::Fail(error.to_string())
    }
}

impl DeployEngine {
    /// An engine; call [`DeployEngine::run_poller`] to start following deployments.
    pub fn new(
        store: DeploymentStore,
        connections: Connections,
        providers: Providers,
        projects: ProjectFiles,
        poller: PollerConfig,
        replica: String,
    ) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            store,
            connections,
            providers,
            projects,
            step_retry: poller.step_retry(),
            poller,
            replica,
            wake: Notify::new(),
            changes,
            creating_home: tokio::sync::Mutex::new(()),
        }
    }

    /// The store.
    pub fn store(&self) -> &DeploymentStore {
        &self.store
    }

    /// Users' connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// Whose account a new deployment of `owner` to `provider` uses: their connection, else the
    /// operator's when opted in; otherwise the caller must connect one first.
    pub async fn account_for(
        &self,
        owner: &str,
        provider: crate::model::Provider,
    ) -> Result<Account> {
        if self
            .connections
            .store()
            .get(owner, provider)
            .await?
            .is_some()
        {
            Ok(Account::User)
        } else if self.providers.platform(provider).is_some() {
            Ok(Account::Platform)
        } else {
            Err(Error::NotConnected { provider })
        }
    }

    /// The credentials a step of `record` acts with, and the account id they act in.
    async fn credentials(&self, record: &DeploymentRecord) -> Result<Opened, String> {
        let provider = record.provider;
        match record.account {
            Account::Platform => self
                .providers
                .platform(provider)
                .map(|credentials| Opened {
                    credentials,
                    account_id: "platform".to_string(),
                })
                .ok_or_else(|| {
                    format!("the operator's {provider} account is no longer enabled on this server")
                }),
            Account::User => self
                .connections
                .open(&record.owner_id, provider)
                .await?
                .ok_or_else(|| {
                    format!(
                        "the {provider} connection was removed; connect an account with PUT \
                         /api/integrations/{} and deploy again",
                        provider.as_str()
                    )
                }),
        }
    }

    /// When `record` must have ended (`DEPLOY_MAX_BUILD_SECS` after its creation), Unix ms.
    pub fn deadline_ms(&self, record: &DeploymentRecord) -> i64 {
        record.created_at_ms + self.poller.max_build.as_millis() as i64
    }

    /// Ends deployment `id` in `error` if it is still active past its deadline, asking the
    /// provider to stop it; returns whether it did. Called by the poller and by event streams,
    /// so a deployment ends on time even while no poller runs.
    pub async fn expire_if_due(&self, id: &str) -> Result<bool> {
        let Some(record) = self.store.get_any(id).await? else {
            return Ok(false);
        };
        if record.state.is_final() || now_ms() < self.deadline_ms(&record) {
            return Ok(false);
        }
        let secs = self.poller.max_build.as_secs();
        let reason = format!(
            "timed out at the provider: not finished {secs} s after it was created \
             (DEPLOY_MAX_BUILD_SECS)"
        );
        let change = Change::failed(reason);
        let expired = self
            .transition(id, record.state, State::Error, change)
            .await?;
        if expired
            && let Some(provider_id) = record.provider_deployment_id.as_deref()
            && let Ok(opened) = self.credentials(&record).await
            && let Err(e) = self
                .providers
                .cancel(record.provider, &opened.credentials, provider_id)
                .await
        {
            tracing::info!(id, error = %e, "cannot cancel a timed-out deployment at the provider");
        }
        Ok(expired)
    }

    /// project-service.
    pub fn projects(&self) -> &ProjectFiles {
        &self.projects
    }

    /// Ids of deployments whose events changed in this process (after commit).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// Records a new deployment; wakes the poller when one was created.
    pub async fn create(&self, new: NewDeployment) -> Result<(DeploymentRecord, bool)> {
        let (record, created) = self.store.insert(new).await?;
        if created {
            crate::metrics::record_state(record.provider, record.state);
            self.changed(&record.id);
            self.wake.notify_one();
        }
        Ok((record, created))
    }

    fn changed(&self, id: &str) {
        // No receiver is fine: nobody is watching.
        let _ = self.changes.send(id.to_string());
    }

    async fn transition(&self, id: &str, from: State, to: State, change: Change) -> Result<bool> {
        let moved = self.store.transition(id, from, to, change).await?;
        if moved {
            // Transitions are a handful per deployment: reading the provider back is cheap.
            if let Some(record) = self.store.get_any(id).await? {
                crate::metrics::record_state(record.provider, to);
            }
            self.changed(id);
        }
        Ok(moved)
    }

    /// Cancels the owner's deployment `id`: at the provider when it has it, then in the table.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<DeploymentRecord> {
        // The poller may move the deployment between our read and our update; each conditional
        // update that loses that race re-reads and decides again.
        let mut asked_provider = false;
        for _ in 0..5 {
            let record = self
                .store
                .get(owner, id)
                .await?
                .ok_or(Error::DeploymentNotFound)?;
            let moved = match record.state {
                // The poller saw the provider's cancel (ours) before we recorded it: done.
                State::Canceled if asked_provider => break,
                state if state.is_final() => return Err(Error::AlreadyFinal { state }),
                State::Building => {
                    let provider_id = record.provider_deployment_id.clone().unwrap_or_default();
                    let opened =
                        self.credentials(&record)
                            .await
                            .map_err(|_| Error::NotConnected {
                                provider: record.provider,
                            })?;
                    self.providers
                        .cancel(record.provider, &opened.credentials, &provider_id)
                        .await?;
                    asked_provider = true;
                    let message = format!("canceled; {} confirmed the cancel", record.provider);
                    self.transition(
                        id,
                        State::Building,
                        State::Canceled,
                        Change::message(message),
                    )
                    .await?
                }
                // The poller sees the change when it is done uploading and cancels at the
                // provider whatever it created.
                state => {
                    let change = Change::message("canceled before the provider started building");
                    self.transition(id, state, State::Canceled, change).await?
                }
            };
            if moved {
                break;
            }
        }
        self.store
            .get(owner, id)
            .await?
            .ok_or(Error::DeploymentNotFound)
    }

    /// Queues a rollback to the last ready deployment before the owner's deployment `id`.
    pub async fn rollback(&self, owner: &str, id: &str) -> Result<DeploymentRecord> {
        let record = self
            .store
            .get(owner, id)
            .await?
            .ok_or(Error::DeploymentNotFound)?;
        let previous =
            self.store
                .previous_ready(&record)
                .await?
                .ok_or(Error::NothingToRollBack {
                    provider: record.provider,
                })?;
        // The rollback acts in the account the earlier deployment went to.
        let usable = match previous.account {
            Account::User => self
                .connections
                .store()
                .get(owner, record.provider)
                .await?
                .is_some(),
            Account::Platform => self.providers.platform(record.provider).is_some(),
        };
        if !usable {
            return Err(Error::NotConnected {
                provider: record.provider,
            });
        }
        let (created, _) = self
            .create(NewDeployment {
                owner_id: owner.to_string(),
                project_id: record.project_id.clone(),
                provider: record.provider,
                target: previous.target,
                env: EnvVars::default(),
                idempotency_key: None,
                request_digest: String::new(),
                rollback_of: Some(previous.id.clone()),
                provider_site_id: previous.provider_site_id.clone(),
                message: format!("rollback to deployment {} queued", previous.id),
                account: previous.account,
                // A rollback makes an earlier upload live again: it reads no files.
                files_grant: None,
            })
            .await?;
        Ok(created)
    }
}
