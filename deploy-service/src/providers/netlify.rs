//! Netlify REST API: a site per AutoCrea project (`POST /sites`), digest deploys
//! (`POST /sites/{site}/deploys` with the path→SHA-1 map, then `PUT /deploys/{id}/files/{path}`
//! for the digests Netlify lists as `required`), status (`GET /deploys/{id}`), cancel
//! (`POST /deploys/{id}/cancel`) and rollback (`POST /sites/{site}/deploys/{id}/restore`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::http::{HttpCaller, Reply};
use super::{DeployFile, ProviderError, RemoteState, RemoteStatus, Submitted};
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
    pub(crate) fn new(http: HttpCaller, base: &str, token: SecretString) -> anyhow::Result<Self> {
        Ok(Self {
            http,
            base: Url::parse(base.trim_end_matches('/'))?,
            token,
        })
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

    /// Creates a site with a name Netlify picks; returns its id.
    pub async fn create_site(&self) -> Result<String, ProviderError> {
        let reply = self
            .http
            .send("site creation", |c| {
                self.request(c, Method::POST, self.url(["sites"]))
                    .json(&json!({}))
            })
            .await?
            .success(P, "site creation")?;
        reply
            .json()
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| protocol("site creation", "no site id in the answer"))
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
            url: deploy_url(&deploy),
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

    /// Reads a deploy.
    pub async fn status(&self, id: &str) -> Result<RemoteStatus, ProviderError> {
        let deploy = self.get(id).await?.json();
        let raw =
            string(&deploy, "state").ok_or_else(|| protocol("status", "no state in the deploy"))?;
        let state = match raw.as_str() {
            "ready" => RemoteState::Ready,
            "error" => {
                let message = string(&deploy, "error_message")
                    .unwrap_or_else(|| "the deploy failed".to_string());
                // Netlify reports a canceled deploy as an error whose message says so.
                if message.to_ascii_lowercase().contains("cancel") {
                    RemoteState::Canceled
                } else {
                    RemoteState::Failed(message)
                }
            }
            other => RemoteState::InProgress(other.to_string()),
        };
        Ok(RemoteStatus {
            state,
            raw,
            url: deploy_url(&deploy),
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
            url: deploy_url(&deploy),
        })
    }
}

fn string(json: &Value, key: &str) -> Option<String> {
    json.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The site URL for a published deploy, else the deploy's own URL.
fn deploy_url(deploy: &Value) -> Option<String> {
    string(deploy, "ssl_url")
        .or_else(|| string(deploy, "deploy_ssl_url"))
        .or_else(|| string(deploy, "url"))
}

fn protocol(what: &str, message: &str) -> ProviderError {
    ProviderError::Protocol {
        provider: P,
        what: what.to_string(),
        message: message.to_string(),
    }
}
