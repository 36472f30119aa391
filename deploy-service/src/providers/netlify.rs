//! Netlify REST API: a site per AutoCrea project (`POST /sites`), digest deploys
//! (`POST /sites/{site}/deploys` with the path→SHA-1 map, then `PUT /deploys/{id}/files/{path}`
//! for the digests Netlify lists as `required`), status (`GET /deploys/{id}`), cancel
//! (`POST /deploys/{id}/cancel`) and rollback (`POST /sites/{site}/deploys/{id}/restore`);
//! tokens verified with `GET /user`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::http::{HttpCaller, Reply};
use super::{
    Credentials, DeployFile, Home, ProviderError, RemoteState, RemoteStatus, Submitted,
    VerifiedAccount,
};
use crate::model::{Provider, Target};

const P: Provider = Provider::Netlify;

/// How long to wait for an async deploy to leave `preparing` before its `required` list is known.
const PREPARE_POLLS: usize = 100;

/// A Netlify client holding the token.
#[derive(Clone)]
pub struct NetlifyClient {
    http: HttpCaller,
    base: Url,
    token: SecretString,
}

impl std::fmt::Debug for NetlifyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlifyClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl NetlifyClient {
    pub(crate) fn new(http: HttpCaller, base: Url, credentials: &Credentials) -> Self {
        Self {
            http,
            base,
            token: credentials.token.clone(),
        }
    }

    /// The URL of `segments` under the base, each segment escaped (file paths may hold spaces
    /// and other characters that must not reach the URL raw).
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, client: &Client, method: Method, url: Url) -> RequestBuilder {
        client
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
    }

    /// The account the token belongs to (`GET /user`).
    pub async fn whoami(&self) -> Result<VerifiedAccount, ProviderError> {
        let user = self
            .http
            .send("token check", |c| {
                self.request(c, Method::GET, self.url(["user"]))
            })
            .await?
            .success(P, "token check")?
            .json();
        let id = string(&user, "id")
            .ok_or_else(|| protocol("token check", "no user id in the answer"))?;
        let name = string(&user, "full_name")
            .or_else(|| string(&user, "email"))
            .unwrap_or_else(|| id.clone());
        Ok(VerifiedAccount {
            id,
            name,
            project_id: None,
            environment_id: None,
        })
    }

    /// Creates a site named `name` (its subdomain); when Netlify refuses the name (taken
    /// across Netlify), one with a name Netlify picks.
    pub async fn create_site(&self, name: &str) -> Result<Home, ProviderError> {
        let mut reply = self.post_site(json!({"name": name})).await?;
        if reply.status.as_u16() == 422 {
            reply = self.post_site(json!({})).await?;
        }
        let site = reply.success(P, "site creation")?.json();
        let id = string(&site, "id")
            .ok_or_else(|| protocol("site creation", "no site id in the answer"))?;
        let name = string(&site, "name").unwrap_or_else(|| id.clone());
        Ok(Home { id, name })
    }

    async fn post_site(&self, body: Value) -> Result<Reply, ProviderError> {
        self.http
            .send("site creation", |c| {
                self.request(c, Method::POST, self.url(["sites"]))
                    .json(&body)
            })
            .await
    }

    /// Deploys `files` to `site` by digest, uploading only what Netlify does not have yet.
    /// A preview is a draft deploy (not published).
    pub async fn deploy(
        &self,
        site: &str,
        target: Target,
        files: &[DeployFile],
    ) -> Result<Submitted, ProviderError> {
        let digests: BTreeMap<String, &str> = files
            .iter()
            .map(|f| (format!("/{}", f.path), f.sha1.as_str()))
            .collect();
        let body = json!({
            "files": digests,
            "draft": target == Target::Preview,
            "async": false,
        });
        let reply = self
            .http
            .send("deploy creation", |c| {
                self.request(c, Method::POST, self.url(["sites", site, "deploys"]))
                    .json(&body)
            })
            .await?
            .success(P, "deploy creation")?;
        let mut deploy = reply.json();
        let id = string(&deploy, "id")
            .ok_or_else(|| protocol("deploy creation", "no deploy id in the answer"))?;

        // Netlify computes `required` while `preparing`; with `async: false` it is usually done,
        // but an async-preparing answer must be polled until it is.
        let mut polls = 0;
        while deploy.get("required").is_none()
            && matches!(
                string(&deploy, "state").as_deref(),
                Some("new" | "preparing")
            )
            && polls < PREPARE_POLLS
        {
            polls += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            deploy = self.get(&id).await?.json();
        }

        let required: HashSet<&str> = deploy
            .get("required")
            .and_then(Value::as_array)
            .map(|shas| shas.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // Identical content appears once in `required`: upload it under its first path only.
        let mut uploaded = HashSet::new();
        for file in files {
            if required.contains(file.sha1.as_str()) && uploaded.insert(file.sha1.as_str()) {
                self.upload(&id, file).await?;
            }
        }
        Ok(Submitted {
            deployment_id: id,
            site_id: Some(site.to_string()),
            url: deploy_url(&deploy, target),
        })
    }

    async fn upload(&self, deploy: &str, file: &DeployFile) -> Result<(), ProviderError> {
        let what = format!("upload of {}", file.path);
        let mut segments = vec!["deploys", deploy, "files"];
        segments.extend(file.path.split('/'));
        let url = self.url(segments);
        self.http
            .send(&what, |c| {
                self.request(c, Method::PUT, url.clone())
                    .header("content-type", "application/octet-stream")
                    .body(file.content.clone())
            })
            .await?
            .success(P, &what)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Reply, ProviderError> {
        self.http
            .send("status", |c| {
                self.request(c, Method::GET, self.url(["deploys", id]))
            })
            .await?
            .success(P, "status")
    }

    /// Reads a deploy; a preview (draft) reports its own URL, not the live site's.
    pub async fn status(&self, id: &str, target: Target) -> Result<RemoteStatus, ProviderError> {
        let deploy = self.get(id).await?.json();
        let raw =
            string(&deploy, "state").ok_or_else(|| protocol("status", "no state in the deploy"))?;
        // The state says what happened; the error text is for people and is never parsed.
        let state = match raw.as_str() {
            "ready" => RemoteState::Ready,
            "canceled" | "cancelled" => RemoteState::Canceled,
            "error" | "failed" => RemoteState::Failed(
                string(&deploy, "error_message").unwrap_or_else(|| "the deploy failed".to_string()),
            ),
            other => RemoteState::InProgress(other.to_string()),
        };
        Ok(RemoteStatus {
            state,
            raw,
            url: deploy_url(&deploy, target),
            note: None,
        })
    }

    /// Cancels a deploy in progress.
    pub async fn cancel(&self, id: &str) -> Result<(), ProviderError> {
        self.http
            .send("cancel", |c| {
                self.request(c, Method::POST, self.url(["deploys", id, "cancel"]))
            })
            .await?
            .success(P, "cancel")?;
        Ok(())
    }

    /// Publishes an earlier deploy of `site` again.
    pub async fn restore(&self, site: &str, id: &str) -> Result<Submitted, ProviderError> {
        let reply = self
            .http
            .send("restore", |c| {
                self.request(
                    c,
                    Method::POST,
                    self.url(["sites", site, "deploys", id, "restore"]),
                )
            })
            .await?
            .success(P, "restore")?;
        let deploy = reply.json();
        Ok(Submitted {
            deployment_id: string(&deploy, "id").unwrap_or_else(|| id.to_string()),
            site_id: Some(site.to_string()),
            // Restored means published: the live site's URL.
            url: deploy_url(&deploy, Target::Production),
        })
    }
}

fn string(json: &Value, key: &str) -> Option<String> {
    json.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The live site's URL for a published deploy; a draft's own URL (`deploy_ssl_url`) for a
/// preview, which is not what the site serves.
fn deploy_url(deploy: &Value, target: Target) -> Option<String> {
    let draft = target == Target::Preview || deploy.get("draft") == Some(&Value::Bool(true));
    if draft {
        string(deploy, "deploy_ssl_url").or_else(|| string(deploy, "deploy_url"))
    } else {
        string(deploy, "ssl_url")
            .or_else(|| string(deploy, "deploy_ssl_url"))
            .or_else(|| string(deploy, "url"))
    }
}

fn protocol(what: &str, message: &str) -> ProviderError {
    ProviderError::Protocol {
        provider: P,
        what: what.to_string(),
        message: message.to_string(),
    }
}
