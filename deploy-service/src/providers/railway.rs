//! Railway public GraphQL API (`POST /graphql/v2`): variables (`variableCollectionUpsert`),
//! deploys (`serviceInstanceDeployV2`), status (`deployment(id)`), cancel
//! (`deploymentCancel`) and rollback (`deploymentRollback`).
//!
//! Railway builds a service from the source it is configured with (repository or image), so a
//! Railway deployment triggers that build with the project's variables; it uploads no files.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::http::{HttpCaller, error_text};
use super::{ProviderError, RemoteState, RemoteStatus, Submitted, with_scheme};
use crate::config::RailwayConfig;
use crate::model::{EnvVars, Provider};

const P: Provider = Provider::Railway;

/// Which header carries the token: Railway refuses requests that send both.
#[derive(Clone)]
enum Token {
    /// A project token: `Project-Access-Token`.
    Project(SecretString),
    /// An account or team token: `Authorization: Bearer`.
    Account(SecretString),
}

/// A Railway client for one configured service.
#[derive(Clone)]
pub struct RailwayClient {
    http: HttpCaller,
    url: String,
    token: Token,
    project_id: Option<String>,
    environment_id: String,
    service_id: String,
}

impl std::fmt::Debug for RailwayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayClient")
            .field("url", &self.url)
            .field("service_id", &self.service_id)
            .finish_non_exhaustive()
    }
}

impl RailwayClient {
    /// Callers have checked that a token, the environment and the service are configured.
    pub(crate) fn new(http: HttpCaller, config: &RailwayConfig) -> Self {
        let token = match (&config.token, &config.api_token) {
            (Some(project), _) => Token::Project(project.clone()),
            (None, Some(account)) => Token::Account(account.clone()),
            (None, None) => Token::Account(SecretString::from(String::new())),
        };
        Self {
            http,
            url: config.api_url.clone(),
            token,
            project_id: config.project_id.clone(),
            environment_id: config.environment_id.clone().unwrap_or_default(),
            service_id: config.service_id.clone().unwrap_or_default(),
        }
    }

    /// Whether `RAILWAY_PROJECT_ID` is set (variables need it).
    pub fn can_set_variables(&self) -> bool {
        self.project_id.is_some()
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
                let request = c.request(Method::POST, &self.url).json(&body);
                match &self.token {
                    Token::Project(t) => request.header("Project-Access-Token", t.expose_secret()),
                    Token::Account(t) => request.bearer_auth(t.expose_secret()),
                }
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
            _ => Err(ProviderError::Protocol {
                provider: P,
                what: what.to_string(),
                message: error_text(&reply.body),
            }),
        }
    }

    /// Sets the service's variables without triggering a deploy of its own (the deploy follows).
    pub async fn set_variables(&self, env: &EnvVars) -> Result<(), ProviderError> {
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
                "serviceId": self.service_id,
                "variables": variables,
                "skipDeploys": true,
            }}),
        )
        .await?;
        Ok(())
    }

    /// Triggers a deploy of the configured service; returns the deployment id.
    pub async fn deploy(&self) -> Result<Submitted, ProviderError> {
        let data = self
            .graphql(
                "deploy",
                "mutation($serviceId: String!, $environmentId: String!) { serviceInstanceDeployV2(serviceId: $serviceId, environmentId: $environmentId) }",
                json!({"serviceId": self.service_id, "environmentId": self.environment_id}),
            )
            .await?;
        let id = data
            .get("serviceInstanceDeployV2")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("deploy", "no deployment id in the answer"))?;
        Ok(Submitted {
            deployment_id: id.to_string(),
            site_id: Some(self.service_id.clone()),
            url: None,
        })
    }

    /// Reads a deployment.
    pub async fn status(&self, id: &str) -> Result<RemoteStatus, ProviderError> {
        let data = self
            .graphql(
                "status",
                "query($id: String!) { deployment(id: $id) { id status url staticUrl } }",
                json!({"id": id}),
            )
            .await?;
        let deployment = data
            .get("deployment")
            .filter(|d| !d.is_null())
            .ok_or_else(|| protocol("status", "deployment not found"))?;
        let raw = deployment
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("status", "no status in the deployment"))?
            .to_string();
        let state = match raw.as_str() {
            "SUCCESS" | "SLEEPING" => RemoteState::Ready,
            "FAILED" => RemoteState::Failed("the build or deploy failed".to_string()),
            "CRASHED" => RemoteState::Failed("the service crashed after deploying".to_string()),
            "REMOVING" | "REMOVED" | "SKIPPED" => RemoteState::Canceled,
            other => RemoteState::InProgress(other.to_string()),
        };
        let url = ["staticUrl", "url"]
            .iter()
            .filter_map(|k| deployment.get(*k).and_then(Value::as_str))
            .find(|u| !u.is_empty())
            .map(with_scheme);
        Ok(RemoteStatus { state, raw, url })
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
            return Err(ProviderError::Rejected {
                provider: P,
                what: "cancel".to_string(),
                status: 200,
                message: "Railway declined to cancel the deployment".to_string(),
            });
        }
        Ok(())
    }

    /// Rolls back to deployment `previous`. Railway's schema has returned both a Boolean and a
    /// deployment object here, so the scalar form is tried first and the object form when the
    /// server asks for a selection of subfields.
    pub async fn rollback(&self, previous: &str) -> Result<Submitted, ProviderError> {
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
        let result = data
            .get("deploymentRollback")
            .cloned()
            .unwrap_or(Value::Null);
        let deployment_id = match &result {
            Value::Object(object) => object
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or(previous)
                .to_string(),
            Value::Bool(true) => previous.to_string(),
            _ => {
                return Err(ProviderError::Rejected {
                    provider: P,
                    what: "rollback".to_string(),
                    status: 200,
                    message: "Railway declined the rollback".to_string(),
                });
            }
        };
        Ok(Submitted {
            deployment_id,
            site_id: Some(self.service_id.clone()),
            url: None,
        })
    }
}

fn protocol(what: &str, message: &str) -> ProviderError {
    ProviderError::Protocol {
        provider: P,
        what: what.to_string(),
        message: message.to_string(),
    }
}
