//! Railway public GraphQL API (`POST /graphql/v2`) with the user's account or workspace token
//! (`Authorization: Bearer`): token check (`me`), the project and its environments, a service
//! per AutoCrea project (`serviceCreate`), its variables (`variableCollectionUpsert`), status
//! (`deployment(id)`), cancel (`deploymentCancel`) and rollback (`deploymentRollback`).
//!
//! The files are shipped the way the Railway CLI's `up` does: a gzipped tarball posted to
//! `/project/{project}/environment/{environment}/up?serviceId=…` on the same host.

use bytes::Bytes;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::http::{HttpCaller, error_text};
use super::{
    Credentials, Home, ProviderError, RemoteState, RemoteStatus, Submitted, VerifiedAccount,
    with_scheme,
};
use crate::model::{EnvVars, Provider};

const P: Provider = Provider::Railway;

/// The name of the project created in a workspace when the connection names no project.
const CREATED_PROJECT: &str = "autocrea";

/// A Railway client acting with one user's token in one project and environment.
#[derive(Clone)]
pub struct RailwayClient {
    http: HttpCaller,
    url: String,
    token: SecretString,
    project_id: String,
    environment_id: String,
}

impl std::fmt::Debug for RailwayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayClient")
            .field("url", &self.url)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl RailwayClient {
    pub(crate) fn new(http: HttpCaller, url: &str, credentials: &Credentials) -> Self {
        Self {
            http,
            url: url.to_string(),
            token: credentials.token.clone(),
            project_id: credentials.project_id.clone().unwrap_or_default(),
            environment_id: credentials.environment_id.clone().unwrap_or_default(),
        }
    }

    /// The host's root (the GraphQL endpoint without `/graphql/v2`), where `up` lives.
    fn root(&self) -> &str {
        self.url
            .trim_end_matches('/')
            .trim_end_matches("/graphql/v2")
    }

    /// Runs one GraphQL operation and returns its `data`; GraphQL errors (which Railway sends
    /// with HTTP 200) become [`ProviderError::Rejected`].
    async fn graphql(
        &self,
        what: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, ProviderError> {
        let body = json!({"query": query, "variables": variables});
        let reply = self
            .http
            .send(what, |c| {
                c.request(Method::POST, &self.url)
                    .bearer_auth(self.token.expose_secret())
                    .json(&body)
            })
            .await?
            .success(P, what)?;
        let json = reply.json();
        let errors = json.get("errors").and_then(Value::as_array);
        if let Some(errors) = errors.filter(|e| !e.is_empty()) {
            let message = errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ProviderError::Rejected {
                provider: P,
                what: what.to_string(),
                status: reply.status.as_u16(),
                message,
            });
        }
        match json.get("data") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => Err(protocol(what, &error_text(&reply.body))),
        }
    }

    /// Checks the token and settles the project and environment deployments go to: the given
    /// project (its `production` or only environment unless one is given), or a project created
    /// in `workspace`. A workspace token may not answer `me`; the project it can read then
    /// stands for the account.
    pub async fn whoami(&self, workspace: Option<&str>) -> Result<VerifiedAccount, ProviderError> {
        let me = self
            .graphql("token check", "query { me { id name email } }", json!({}))
            .await;
        let (project, environments) = match (self.project_id.is_empty(), workspace) {
            (false, _) => self.project(&self.project_id).await?,
            (true, Some(workspace)) => {
                // Checked before anything is created in the user's account.
                me.as_ref().map_err(Clone::clone)?;
                self.create_project(workspace).await?
            }
            (true, None) => {
                return Err(protocol(
                    "token check",
                    "a project id or a workspace id is required",
                ));
            }
        };
        let environment_id = if self.environment_id.is_empty() {
            environments
                .iter()
                .find(|(_, name)| name == "production")
                .or(environments.first())
                .map(|(id, _)| id.clone())
                .ok_or_else(|| protocol("project", "the project has no environment"))?
        } else if environments
            .iter()
            .any(|(id, _)| *id == self.environment_id)
        {
            self.environment_id.clone()
        } else {
            return Err(ProviderError::Rejected {
                provider: P,
                what: "project".to_string(),
                status: 200,
                message: format!(
                    "environment {} is not an environment of project {}",
                    self.environment_id, project.0
                ),
            });
        };
        let (id, name) = match me {
            Ok(data) => {
                let me = &data["me"];
                let id = me["id"].as_str().unwrap_or_default().to_string();
                let name = ["name", "email"]
                    .iter()
                    .find_map(|k| me[*k].as_str().filter(|v| !v.is_empty()))
                    .unwrap_or(&id)
                    .to_string();
                (id, name)
            }
            Err(_) => (project.0.clone(), format!("project {}", project.1)),
        };
        Ok(VerifiedAccount {
            id,
            name,
            project_id: Some(project.0),
            environment_id: Some(environment_id),
        })
    }

    /// A project's (id, name) and its environments' (id, name).
    async fn project(&self, id: &str) -> Result<Project, ProviderError> {
        let data = self
            .graphql(
                "project",
                "query($id: String!) { project(id: $id) { id name environments { edges { node { id name } } } } }",
                json!({"id": id}),
            )
            .await?;
        project_of(&data["project"], "project")
    }

    async fn create_project(&self, workspace: &str) -> Result<Project, ProviderError> {
        let data = self
            .graphql(
                "project creation",
                "mutation($input: ProjectCreateInput!) { projectCreate(input: $input) { id name environments { edges { node { id name } } } } }",
                json!({"input": {"name": CREATED_PROJECT, "workspaceId": workspace}}),
            )
            .await?;
        project_of(&data["projectCreate"], "project creation")
    }

    /// Creates a service named `name` in the connection's project, with no source: its code
    /// comes with each `up`.
    pub async fn create_service(&self, name: &str) -> Result<Home, ProviderError> {
        let data = self
            .graphql(
                "service creation",
                "mutation($input: ServiceCreateInput!) { serviceCreate(input: $input) { id name } }",
                json!({"input": {"projectId": self.project_id, "environmentId": self.environment_id, "name": name}}),
            )
            .await?;
        let service = &data["serviceCreate"];
        let id = service["id"]
            .as_str()
            .ok_or_else(|| protocol("service creation", "no service id in the answer"))?;
        Ok(Home {
            id: id.to_string(),
            name: service["name"].as_str().unwrap_or(name).to_string(),
        })
    }

    /// Sets variables on `service` only, without a deploy of their own (the upload follows).
    pub async fn set_variables(&self, service: &str, env: &EnvVars) -> Result<(), ProviderError> {
        let variables: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.graphql(
            "variables",
            "mutation($input: VariableCollectionUpsertInput!) { variableCollectionUpsert(input: $input) }",
            json!({"input": {
                "projectId": self.project_id,
                "environmentId": self.environment_id,
                "serviceId": service,
                "variables": variables,
                "skipDeploys": true,
            }}),
        )
        .await?;
        Ok(())
    }

    /// Uploads the project as a gzipped tarball to `service` (`railway up`); Railway builds
    /// and deploys it.
    pub async fn up(&self, service: &str, tarball: Bytes) -> Result<Submitted, ProviderError> {
        let url = format!(
            "{}/project/{}/environment/{}/up",
            self.root(),
            self.project_id,
            self.environment_id
        );
        let reply = self
            .http
            .send("upload", |c| {
                c.post(&url)
                    .query(&[("serviceId", service), ("message", "AutoCrea deploy")])
                    .bearer_auth(self.token.expose_secret())
                    .header("content-type", "application/gzip")
                    .body(tarball.clone())
            })
            .await?;
        if reply.status.as_u16() == 413 {
            return Err(ProviderError::Rejected {
                provider: P,
                what: "upload".to_string(),
                status: 413,
                message: format!(
                    "the project is too large for Railway ({} bytes compressed)",
                    tarball.len()
                ),
            });
        }
        let json = reply.success(P, "upload")?.json();
        let id = json["deploymentId"]
            .as_str()
            .ok_or_else(|| protocol("upload", "no deploymentId in the answer"))?;
        Ok(Submitted {
            deployment_id: id.to_string(),
            site_id: Some(service.to_string()),
            url: json["deploymentDomain"]
                .as_str()
                .filter(|d| !d.is_empty())
                .map(with_scheme),
        })
    }

    async fn deployment(&self, id: &str) -> Result<Value, ProviderError> {
        let data = self
            .graphql(
                "status",
                "query($id: String!) { deployment(id: $id) { id status url staticUrl canRollback } }",
                json!({"id": id}),
            )
            .await?;
        data.get("deployment")
            .filter(|d| !d.is_null())
            .cloned()
            .ok_or_else(|| protocol("status", "deployment not found"))
    }

    /// Reads a deployment.
    pub async fn status(&self, id: &str) -> Result<RemoteStatus, ProviderError> {
        let deployment = self.deployment(id).await?;
        let raw = deployment
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("status", "no status in the deployment"))?
            .to_string();
        let mut note = None;
        let state = match raw.as_str() {
            "SUCCESS" => RemoteState::Ready,
            // Railway only puts a deployment that went live to sleep (App Sleeping): it is
            // deployed, whenever we first see it, and wakes on its next request.
            "SLEEPING" => {
                note = Some("sleeping at Railway until its next request".to_string());
                RemoteState::Ready
            }
            "FAILED" => RemoteState::Failed("the build or deploy failed".to_string()),
            "CRASHED" => RemoteState::Failed("the service crashed after deploying".to_string()),
            "REMOVING" | "REMOVED" | "SKIPPED" => RemoteState::Canceled,
            "NEEDS_APPROVAL" => RemoteState::Waiting(
                "waiting for someone to approve the deployment in Railway".to_string(),
            ),
            "WAITING" => RemoteState::Waiting(
                "waiting at Railway for the services it depends on or a check".to_string(),
            ),
            other => RemoteState::InProgress(other.to_string()),
        };
        let url = ["staticUrl", "url"]
            .iter()
            .filter_map(|k| deployment.get(*k).and_then(Value::as_str))
            .find(|u| !u.is_empty())
            .map(with_scheme);
        Ok(RemoteStatus {
            state,
            raw,
            url,
            note,
        })
    }

    /// Cancels a deployment in progress.
    pub async fn cancel(&self, id: &str) -> Result<(), ProviderError> {
        let data = self
            .graphql(
                "cancel",
                "mutation($id: String!) { deploymentCancel(id: $id) }",
                json!({"id": id}),
            )
            .await?;
        if data.get("deploymentCancel") == Some(&Value::Bool(false)) {
            return Err(rejected(
                "cancel",
                "Railway declined to cancel the deployment",
            ));
        }
        Ok(())
    }

    /// Rolls `service` back to deployment `previous` when Railway says it can, and returns the
    /// deployment the rollback created (the one to follow). Railway's schema has returned both
    /// a Boolean and a deployment object here: with a Boolean, the service's newest deployment
    /// is the one the rollback created.
    pub async fn rollback(
        &self,
        service: &str,
        previous: &str,
    ) -> Result<Submitted, ProviderError> {
        let before = self.deployment(previous).await?;
        if before.get("canRollback") != Some(&Value::Bool(true)) {
            return Err(rejected(
                "rollback",
                &format!(
                    "Railway cannot roll back to deployment {previous} (canRollback is false)"
                ),
            ));
        }
        let scalar = self
            .graphql(
                "rollback",
                "mutation($id: String!) { deploymentRollback(id: $id) }",
                json!({"id": previous}),
            )
            .await;
        let data = match scalar {
            Err(ProviderError::Rejected { message, .. })
                if message.to_ascii_lowercase().contains("selection") =>
            {
                self.graphql(
                    "rollback",
                    "mutation($id: String!) { deploymentRollback(id: $id) { id status } }",
                    json!({"id": previous}),
                )
                .await?
            }
            other => other?,
        };
        let created = match data.get("deploymentRollback") {
            Some(Value::Object(object)) => object
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| *id != previous)
                .map(str::to_string),
            Some(Value::Bool(true)) => None,
            _ => return Err(rejected("rollback", "Railway declined the rollback")),
        };
        let deployment_id = match created {
            Some(id) => id,
            None => self.newest_deployment(service, previous).await?,
        };
        Ok(Submitted {
            deployment_id,
            site_id: Some(service.to_string()),
            url: None,
        })
    }

    /// The newest deployment of `service` in the environment, which must not be `previous`.
    async fn newest_deployment(
        &self,
        service: &str,
        previous: &str,
    ) -> Result<String, ProviderError> {
        let data = self
            .graphql(
                "rollback",
                "query($input: DeploymentListInput!) { deployments(first: 1, input: $input) { edges { node { id status createdAt } } } }",
                json!({"input": {"projectId": self.project_id, "environmentId": self.environment_id, "serviceId": service}}),
            )
            .await?;
        data.pointer("/deployments/edges/0/node/id")
            .and_then(Value::as_str)
            .filter(|id| *id != previous)
            .map(str::to_string)
            .ok_or_else(|| {
                protocol(
                    "rollback",
                    "Railway accepted the rollback but shows no new deployment to follow",
                )
            })
    }
}

/// (id, name) of a project and its environments.
type Project = ((String, String), Vec<(String, String)>);

fn project_of(project: &Value, what: &str) -> Result<Project, ProviderError> {
    let id = project["id"]
        .as_str()
        .ok_or_else(|| protocol(what, "project not found"))?;
    let environments = project
        .pointer("/environments/edges")
        .and_then(Value::as_array)
        .map(|edges| {
            edges
                .iter()
                .filter_map(|e| {
                    Some((
                        e.pointer("/node/id")?.as_str()?.to_string(),
                        e.pointer("/node/name")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let name = project["name"].as_str().unwrap_or(id).to_string();
    Ok(((id.to_string(), name), environments))
}

fn rejected(what: &str, message: &str) -> ProviderError {
    ProviderError::Rejected {
        provider: P,
        what: what.to_string(),
        status: 200,
        message: message.to_string(),
    }
}

fn protocol(what: &str, message: &str) -> ProviderError {
    ProviderError::Protocol {
        provider: P,
        what: what.to_string(),
        message: message.to_string(),
    }
}
