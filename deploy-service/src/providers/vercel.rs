//! Vercel REST API: files are uploaded by SHA-1 digest (`POST /v2/files`), deployments created
//! from the file list (`POST /v13/deployments`), read (`GET /v13/deployments/{id}`) and
//! canceled (`PATCH /v12/deployments/{id}/cancel`); a Vercel project per AutoCrea project
//! (`POST /v10/projects`), its environment variables through
//! `POST /v10/projects/{id}/env?upsert=true`; tokens verified with `GET /v2/user`.

use std::collections::HashSet;

use reqwest::{Client, Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::http::{HttpCaller, Reply, error_text};
use super::{
    Credentials, DeployFile, Home, ProviderError, RemoteState, RemoteStatus, Submitted,
    VerifiedAccount, with_scheme,
};
use crate::model::{EnvVars, Provider, Target};

const P: Provider = Provider::Vercel;

/// How many times a create is resent after uploading the files Vercel reported missing.
const MISSING_FILES_ROUNDS: usize = 3;

/// A Vercel client holding the token.
#[derive(Clone)]
pub struct VercelClient {
    http: HttpCaller,
    base: String,
    token: SecretString,
    team_id: Option<String>,
}

impl std::fmt::Debug for VercelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VercelClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl VercelClient {
    pub(crate) fn new(http: HttpCaller, base: &str, credentials: &Credentials) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: credentials.token.clone(),
            team_id: credentials.team_id.clone(),
        }
    }

    fn request(&self, client: &Client, method: Method, path: &str) -> RequestBuilder {
        let mut request = client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose_secret());
        if let Some(team) = &self.team_id {
            request = request.query(&[("teamId", team)]);
        }
        request
    }

    /// The account the token belongs to (`GET /v2/user`).
    pub async fn whoami(&self) -> Result<VerifiedAccount, ProviderError> {
        let reply = self
            .http
            .send("token check", |c| self.request(c, Method::GET, "/v2/user"))
            .await?
            .success(P, "token check")?;
        let json = reply.json();
        let user = json.get("user").unwrap_or(&json);
        let id = user
            .get("id")
            .or_else(|| user.get("uid"))
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("token check", "no user id in the answer"))?;
        let name = ["username", "name", "email"]
            .iter()
            .find_map(|k| user.get(*k).and_then(Value::as_str))
            .unwrap_or(id);
        Ok(VerifiedAccount {
            id: id.to_string(),
            name: name.to_string(),
            project_id: None,
            environment_id: None,
        })
    }

    /// Creates a Vercel project named `name` with a framework preset; `None` when the name is
    /// taken in this account (409).
    pub async fn create_project(
        &self,
        name: &str,
        framework: Option<&str>,
    ) -> Result<Option<Home>, ProviderError> {
        let body = json!({"name": name, "framework": framework});
        let reply = self
            .http
            .send("project creation", |c| {
                self.request(c, Method::POST, "/v10/projects").json(&body)
            })
            .await?;
        if reply.status.as_u16() == 409 {
            return Ok(None);
        }
        let json = reply.success(P, "project creation")?.json();
        let id = json
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("project creation", "no project id in the answer"))?;
        Ok(Some(Home {
            id: id.to_string(),
            name: json
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string(),
        }))
    }

    /// Uploads one file by digest.
    async fn upload(&self, file: &DeployFile) -> Result<(), ProviderError> {
        let what = format!("upload of {}", file.path);
        self.http
            .send(&what, |c| {
                self.request(c, Method::POST, "/v2/files")
                    .header("content-type", "application/octet-stream")
                    .header("x-vercel-digest", &file.sha1)
                    .body(file.content.clone())
            })
            .await?
            .success(P, &what)?;
        Ok(())
    }

    /// Sets the project's environment variables for production and preview.
    pub async fn set_env(&self, project: &Home, env: &EnvVars) -> Result<(), ProviderError> {
        let body: Vec<Value> = env
            .iter()
            .map(|(key, value)| {
                json!({"key": key, "value": value, "type": "encrypted",
                       "target": ["production", "preview"]})
            })
            .collect();
        let path = format!("/v10/projects/{}/env", project.id);
        self.http
            .send("environment variables", |c| {
                self.request(c, Method::POST, &path)
                    .query(&[("upsert", "true")])
                    .json(&body)
            })
            .await?
            .success(P, "environment variables")?;
        Ok(())
    }

    /// Creates a deployment of `files` in `project`, uploading only the files Vercel reports
    /// missing.
    pub async fn deploy(
        &self,
        project: &Home,
        framework: Option<&str>,
        target: Target,
        files: &[DeployFile],
    ) -> Result<Submitted, ProviderError> {
        let name = project.name.as_str();
        let listed: Vec<Value> = files
            .iter()
            .map(|f| json!({"file": f.path, "sha": f.sha1, "size": f.content.len()}))
            .collect();
        let mut body = json!({
            "name": name,
            "project": project.id,
            "files": listed,
            // Without settings a first deploy fails with `missing_project_settings`; null
            // framework means "other": the files are served as they are.
            "projectSettings": {"framework": framework},
        });
        if target == Target::Production {
            body["target"] = json!("production");
        }
        for _ in 0..=MISSING_FILES_ROUNDS {
            let reply = self
                .http
                .send("deployment creation", |c| {
                    self.request(c, Method::POST, "/v13/deployments")
                        .json(&body)
                })
                .await?;
            if reply.status.is_success() {
                return deployment_submitted(&reply, &project.id);
            }
            let missing = missing_files(&reply);
            if missing.is_empty() {
                return Err(reply.rejection(P, "deployment creation"));
            }
            let missing: HashSet<String> = missing.into_iter().collect();
            let mut uploaded = HashSet::new();
            for file in files {
                if missing.contains(&file.sha1) && uploaded.insert(file.sha1.clone()) {
                    self.upload(file).await?;
                }
            }
        }
        Err(ProviderError::Protocol {
            provider: P,
            what: "deployment creation".to_string(),
            message: "Vercel kept reporting files missing after they were uploaded".to_string(),
        })
    }

    /// Creates a new deployment of project `name` (its id or name) from an existing one
    /// (`deploymentId`): Vercel's redeploy, used to roll back.
    pub async fn redeploy(
        &self,
        name: &str,
        previous: &str,
        target: Target,
    ) -> Result<Submitted, ProviderError> {
        let mut body = json!({"name": name, "project": name, "deploymentId": previous});
        if target == Target::Production {
            body["target"] = json!("production");
        }
        let reply = self
            .http
            .send("redeploy", |c| {
                self.request(c, Method::POST, "/v13/deployments")
                    .json(&body)
            })
            .await?
            .success(P, "redeploy")?;
        deployment_submitted(&reply, name)
    }

    /// Reads a deployment.
    pub async fn status(&self, id: &str) -> Result<RemoteStatus, ProviderError> {
        let reply = self
            .http
            .send("status", |c| {
                self.request(c, Method::GET, &format!("/v13/deployments/{id}"))
            })
            .await?
            .success(P, "status")?;
        let json = reply.json();
        let raw = json
            .get("readyState")
            .or_else(|| json.get("status"))
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("status", "no readyState in the deployment"))?
            .to_string();
        let state = match raw.as_str() {
            "READY" => RemoteState::Ready,
            "ERROR" => RemoteState::Failed(
                json.get("errorMessage")
                    .and_then(Value::as_str)
                    .unwrap_or("the build failed")
                    .to_string(),
            ),
            "CANCELED" => RemoteState::Canceled,
            "BLOCKED" => RemoteState::Waiting(
                "Vercel blocked the deployment (a check, a paused project or a plan limit); it \
                 goes on once that is resolved at Vercel"
                    .to_string(),
            ),
            other => RemoteState::InProgress(other.to_string()),
        };
        Ok(RemoteStatus {
            state,
            raw,
            url: json.get("url").and_then(Value::as_str).map(with_scheme),
            note: None,
        })
    }

    /// Cancels a deployment that is still building.
    pub async fn cancel(&self, id: &str) -> Result<(), ProviderError> {
        self.http
            .send("cancel", |c| {
                self.request(c, Method::PATCH, &format!("/v12/deployments/{id}/cancel"))
            })
            .await?
            .success(P, "cancel")?;
        Ok(())
    }
}

fn deployment_submitted(reply: &Reply, project: &str) -> Result<Submitted, ProviderError> {
    let json = reply.json();
    let id = json
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol("deployment creation", &error_text(&reply.body)))?;
    Ok(Submitted {
        deployment_id: id.to_string(),
        site_id: Some(project.to_string()),
        url: json.get("url").and_then(Value::as_str).map(with_scheme),
    })
}

/// The digests of a `missing_files` error, empty for any other answer.
fn missing_files(reply: &Reply) -> Vec<String> {
    let json = reply.json();
    if json.pointer("/error/code").and_then(Value::as_str) != Some("missing_files") {
        return Vec::new();
    }
    json.pointer("/error/missing")
        .and_then(Value::as_array)
        .map(|shas| {
            shas.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn protocol(what: &str, message: &str) -> ProviderError {
    ProviderError::Protocol {
        provider: P,
        what: what.to_string(),
        message: message.to_string(),
    }
}
