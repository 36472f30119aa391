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
use crate::error::{Error, Result};
use crate::model::{EnvVars, Provider, State};
use crate::projects::ProjectFiles;
use crate::providers::{
    DeployFile, ProviderError, Providers, RemoteState, Submitted, VercelClient,
};
use crate::store::{Change, DeploymentRecord, DeploymentStore, NewDeployment, now_ms};

mod poller;

/// How many deployments one claim takes at most.
const CLAIM_BATCH: usize = 256;
/// How long shutdown waits for steps in flight before abandoning them (their leases are given
/// back either way, and an abandoned step is redone after restart).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Deployments: the store, the provider clients, project-service, and the poller.
#[derive(Debug)]
pub struct DeployEngine {
    store: DeploymentStore,
    providers: Providers,
    projects: ProjectFiles,
    poller: PollerConfig,
    step_retry: retry::RetryPolicy,
    replica: String,
    wake: Notify,
    changes: broadcast::Sender<String>,
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
        providers: Providers,
        projects: ProjectFiles,
        poller: PollerConfig,
        replica: String,
    ) -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            store,
            providers,
            projects,
            step_retry: poller.step_retry(),
            poller,
            replica,
            wake: Notify::new(),
            changes,
        }
    }

    /// The store.
    pub fn store(&self) -> &DeploymentStore {
        &self.store
    }

    /// The provider clients.
    pub fn providers(&self) -> &Providers {
        &self.providers
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
        for _ in 0..5 {
            let record = self
                .store
                .get(owner, id)
                .await?
                .ok_or(Error::DeploymentNotFound)?;
            let moved = match record.state {
                state if state.is_final() => return Err(Error::AlreadyFinal { state }),
                State::Building => {
                    let provider_id = record.provider_deployment_id.clone().unwrap_or_default();
                    self.providers.cancel(record.provider, &provider_id).await?;
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
        self.providers.check(record.provider, &EnvVars::default())?;
        let previous =
            self.store
                .previous_ready(&record)
                .await?
                .ok_or(Error::NothingToRollBack {
                    provider: record.provider,
                })?;
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
                // A rollback makes an earlier upload live again: it reads no files.
                files_grant: None,
            })
            .await?;
        Ok(created)
    }
}
