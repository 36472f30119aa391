//! The gRPC surface (`autocrea.deploy.v1.DeployService`): parse and validate, call the engine,
//! map the result.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use autocrea_proto::deploy::v1 as pb;
use autocrea_proto::deploy::v1::deploy_service_server::DeployService;
use futures::Stream;
use secrecy::SecretString;
use service_runtime::grpc::{caller, verified_caller};
use service_runtime::identity::{Caller, GRANT};
use sha1::{Digest, Sha1};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::connections;
use crate::engine::DeployEngine;
use crate::error::{Error, Invalid, Result};
use crate::model::{
    EnvVars, IdempotencyKey, ProjectId, Provider, Target, page_size, parse_deployment_id,
};
use crate::store::{Cursor, DEPLOYMENT_PAGES, DeploymentRecord, EventRecord, NewDeployment};

/// How often a watch re-reads the event log when no local change woke it (changes made by
/// another replica are only seen this way).
const WATCH_REFRESH: Duration = Duration::from_millis(1000);

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct DeployApi {
    engine: Arc<DeployEngine>,
    shutdown: watch::Receiver<bool>,
}

impl DeployApi {
    /// A service over `engine`; open event streams end when `shutdown` turns true.
    pub fn new(engine: Arc<DeployEngine>, shutdown: watch::Receiver<bool>) -> Self {
        Self { engine, shutdown }
    }

    async fn create(
        &self,
        caller: Caller,
        files_grant: SecretString,
        request: pb::CreateDeploymentRequest,
    ) -> Result<DeploymentRecord> {
        let owner = caller.user_id.clone();
        let project = ProjectId::parse(&request.project_id)?;
        let provider = Provider::parse(&request.provider)?;
        let target = Target::parse(request.target.as_deref())?;
        let env = EnvVars::parse(request.env)?;
        let key = IdempotencyKey::parse(request.idempotency_key.as_deref())?;
        if provider == Provider::Netlify && !env.is_empty() {
            return Err(Invalid::new(
                "env",
                "Netlify serves the uploaded files as they are, without a build, so environment \
                 variables would have no effect; remove env",
            )
            .into());
        }

        let digest = request_digest(&project, provider, target, &env);
        if let Some(key) = &key
            && let Some(existing) = self
                .engine
                .store()
                .by_idempotency_key(&owner, key.as_str())
                .await?
        {
            return same_request(existing, &digest);
        }
        // Before anything is recorded: that the project is theirs, and whose account it goes to.
        self.engine
            .projects()
            .project(caller.assertion(), project.as_str())
            .await?;
        let account = self.engine.account_for(&owner, provider).await?;
        let (record, created) = self
            .engine
            .create(NewDeployment {
                owner_id: owner,
                project_id: project.as_str().to_string(),
                provider,
                target,
                env,
                idempotency_key: key.map(|k| k.as_str().to_string()),
                request_digest: digest.clone(),
                rollback_of: None,
                provider_site_id: None,
                message: format!("deployment to {provider} queued"),
                account,
                files_grant: Some(files_grant),
            })
            .await?;
        if created {
            Ok(record)
        } else {
            same_request(record, &digest)
        }
    }

    async fn get(&self, owner: &str, id: &str) -> Result<DeploymentRecord> {
        let id = parse_deployment_id(id).ok_or(Error::DeploymentNotFound)?;
        self.engine
            .store()
            .get(owner, &id)
            .await?
            .ok_or(Error::DeploymentNotFound)
    }

    async fn targets(&self, caller: &Caller, project: &str) -> Result<pb::ListTargetsResponse> {
        let owner = caller.user_id.as_str();
        let project = ProjectId::parse(project)?;
        // An unknown project (or another user's) is NOT_FOUND, as everywhere else.
        self.engine
            .projects()
            .project(caller.assertion(), project.as_str())
            .await?;
        let homes = self
            .engine
            .connections()
            .store()
            .homes(owner, project.as_str())
            .await?;
        let mut targets = Vec::with_capacity(homes.len());
        for home in homes {
            let url = self
                .engine
                .store()
                .last_ready_url(owner, project.as_str(), home.provider)
                .await?;
            targets.push(pb::ProjectTarget {
                provider: home.provider.as_str().to_string(),
                target_id: home.target_id,
                target_name: home.target_name,
                account_id: home.account_id,
                url: url.unwrap_or_default(),
                created_at_ms: home.created_at_ms,
            });
        }
        Ok(pb::ListTargetsResponse { targets })
    }

    async fn list(
        &self,
        owner: &str,
        request: pb::ListDeploymentsRequest,
    ) -> Result<pb::ListDeploymentsResponse> {
        let project = request
            .project_id
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(ProjectId::parse)
            .transpose()?;
        let scope = project.as_ref().map(ProjectId::as_str).unwrap_or_default();
        let size = page_size(request.page_size)?;
        let cursor = match request.page_token.as_str() {
            "" => None,
            token => Some(DEPLOYMENT_PAGES.decode(token, &[owner, scope])?),
        };
        let project = project.as_ref().map(ProjectId::as_str);
        // One more than asked tells whether another page exists.
        let mut records = self
            .engine
            .store()
            .list(owner, project, cursor.as_ref(), size + 1)
            .await?;
        let more = records.len() as i64 > size;
        records.truncate(size as usize);
        let next_page_token = match records.last() {
            Some(last) if more => DEPLOYMENT_PAGES.encode(
                &Cursor {
                    created_at_ms: last.created_at_ms,
                    id: last.id.clone(),
                },
                &[owner, scope],
            ),
            _ => String::new(),
        };
        Ok(pb::ListDeploymentsResponse {
            deployments: records.into_iter().map(to_proto).collect(),
            next_page_token,
        })
    }
}

/// A reused idempotency key must come with the same request.
fn same_request(existing: DeploymentRecord, digest: &str) -> Result<DeploymentRecord> {
    if existing.request_digest == digest {
        Ok(existing)
    } else {
        Err(Error::IdempotencyKeyReused)
    }
}

fn request_digest(
    project: &ProjectId,
    provider: Provider,
    target: Target,
    env: &EnvVars,
) -> String {
    let mut hash = Sha1::new();
    for part in [project.as_str(), provider.as_str(), target.as_str()] {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    hash.update(env.to_json().as_bytes());
    hex::encode(hash.finalize())
}

fn to_proto(record: DeploymentRecord) -> pb::Deployment {
    pb::Deployment {
        id: record.id,
        owner_id: record.owner_id,
        project_id: record.project_id,
        provider: record.provider.as_str().to_string(),
        target: record.target.as_str().to_string(),
        state: record.state.as_str().to_string(),
        url: record.url.unwrap_or_default(),
        provider_deployment_id: record.provider_deployment_id.unwrap_or_default(),
        error: record.error.unwrap_or_default(),
        rollback_of: record.rollback_of.unwrap_or_default(),
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
        finished_at_ms: record.finished_at_ms.unwrap_or_default(),
        provider_state: record.provider_state.unwrap_or_default(),
        account: record.account.as_str().to_string(),
    }
}

fn event_to_proto(event: EventRecord) -> pb::DeploymentEvent {
    pb::DeploymentEvent {
        sequence: event.sequence,
        deployment_id: event.deployment_id,
        state: event.state.as_str().to_string(),
        message: event.message,
        url: event.url.unwrap_or_default(),
        created_at_ms: event.created_at_ms,
        r#final: event.state.is_final(),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::DeploymentEvent, Status>> + Send>>;

#[tonic::async_trait]
impl DeployService for DeployApi {
    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let caller = verified_caller(&request)?.clone();
        // Without it the upload, later, could not read the files.
        let grant = request
            .metadata()
            .get(GRANT)
            .and_then(|v| v.to_str().ok())
            .map(|v| SecretString::from(v.to_string()))
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "no grant to read the project's files ({GRANT} metadata) came with the call"
                ))
            })?;
        let record = self.create(caller, grant, request.into_inner()).await?;
        Ok(Response::new(to_proto(record)))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let owner = caller(&request)?;
        let record = self.get(&owner, &request.get_ref().id).await?;
        Ok(Response::new(to_proto(record)))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let owner = caller(&request)?;
        Ok(Response::new(
            self.list(&owner, request.into_inner()).await?,
        ))
    }

    type WatchDeploymentStream = EventStream;

    async fn watch_deployment(
        &self,
        request: Request<pb::WatchDeploymentRequest>,
    ) -> Result<Response<Self::WatchDeploymentStream>, Status> {
        let owner = caller(&request)?;
        let record = self.get(&owner, &request.get_ref().id).await?;
        // Subscribe before the first read so that no change falls between the two.
        let changes = self.engine.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(forward_events(
            self.engine.clone(),
            record.id.clone(),
            self.engine.deadline_ms(&record),
            changes,
            self.shutdown.clone(),
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_deployment(
        &self,
        request: Request<pb::CancelDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let owner = caller(&request)?;
        let id = parse_deployment_id(&request.get_ref().id).ok_or(Error::DeploymentNotFound)?;
        let record = self.engine.cancel(&owner, &id).await?;
        Ok(Response::new(to_proto(record)))
    }

    async fn rollback_deployment(
        &self,
        request: Request<pb::RollbackDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let owner = caller(&request)?;
        let id = parse_deployment_id(&request.get_ref().id).ok_or(Error::DeploymentNotFound)?;
        let record = self.engine.rollback(&owner, &id).await?;
        Ok(Response::new(to_proto(record)))
    }

    async fn put_connection(
        &self,
        request: Request<pb::PutConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        let owner = caller(&request)?;
        let record = self
            .engine
            .connections()
            .put(&owner, request.into_inner())
            .await?;
        Ok(Response::new(connections::to_proto(record)))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let owner = caller(&request)?;
        let records = self
            .engine
            .connections()
            .store()
            .list(&owner)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::ListConnectionsResponse {
            connections: records.into_iter().map(connections::to_proto).collect(),
        }))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Result<Response<pb::DeleteConnectionResponse>, Status> {
        let owner = caller(&request)?;
        self.engine
            .connections()
            .delete(&owner, &request.get_ref().provider)
            .await?;
        Ok(Response::new(pb::DeleteConnectionResponse {}))
    }

    async fn list_targets(
        &self,
        request: Request<pb::ListTargetsRequest>,
    ) -> Result<Response<pb::ListTargetsResponse>, Status> {
        let caller = verified_caller(&request)?;
        Ok(Response::new(
            self.targets(caller, &request.get_ref().project_id).await?,
        ))
    }

    async fn forget_project(
        &self,
        request: Request<pb::ForgetProjectRequest>,
    ) -> Result<Response<pb::ForgetProjectResponse>, Status> {
        let owner = caller(&request)?;
        let project = ProjectId::parse(&request.get_ref().project_id).map_err(Error::from)?;
        let forgotten = self
            .engine
            .connections()
            .store()
            .forget_project(&owner, project.as_str())
            .await?;
        Ok(Response::new(pb::ForgetProjectResponse {
            forgotten: u32::try_from(forgotten).unwrap_or(u32::MAX),
        }))
    }
}

/// Sends the events of deployment `id` as they are committed until a final one, the client
/// leaving, or shutdown.
async fn forward_events(
    engine: Arc<DeployEngine>,
    id: String,
    deadline: i64,
    mut changes: broadcast::Receiver<String>,
    mut shutdown: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<pb::DeploymentEvent, Status>>,
) {
    let mut last = 0;
    loop {
        let events = match engine.store().events_after(&id, last).await {
            Ok(events) => events,
            Err(e) => {
                let _ = tx.send(Err(Status::from(e))).await;
                return;
            }
        };
        for event in events {
            last = event.sequence;
            let done = event.state.is_final();
            if tx.send(Ok(event_to_proto(event))).await.is_err() || done {
                return;
            }
        }
        // Past its deadline a deployment ends here too (the poller may be down or behind): the
        // final event this commits is sent on the next round and closes the stream.
        if crate::store::now_ms() >= deadline {
            match engine.expire_if_due(&id).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(id, error = %e, "cannot end an overdue deployment"),
            }
        }
        // Wait for a change of this deployment, a refresh tick, the client leaving, or shutdown.
        let refresh = tokio::time::sleep(WATCH_REFRESH);
        tokio::pin!(refresh);
        loop {
            tokio::select! {
                changed = changes.recv() => match changed {
                    Ok(changed) if changed != id => continue,
                    // Lagging means we may have missed ours: read again.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = &mut refresh => break,
                () = tx.closed() => return,
                _ = shutdown.changed() => {
                    let _ = tx.send(Err(Status::unavailable("deploy-service is shutting down; watch again"))).await;
                    return;
                }
            }
        }
    }
}
