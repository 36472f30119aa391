//! A Netlify API stand-in (base `/api/v1`) following the documented routes and shapes:
//! `GET /user`, `POST /sites` (201; 422 when the name is taken by any account), digest deploys
//! `POST /sites/{site}/deploys` answering `required` with the digests it does not hold yet
//! (identical content listed once), `PUT /deploys/{id}/files/{path}` (raw bytes),
//! `GET /deploys/{id}` (uploading → processing → ready), `POST /deploys/{id}/cancel` (201, state
//! `canceled`) and `POST /sites/{site}/deploys/{id}/restore` (201). Several accounts (bearer
//! token → account): every call is checked, and sites and deploys are visible to their account
//! only. Errors are `{code, message}`.

use std::collections::{HashMap, HashSet};

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::server::{Accounts, FakeServer, Script, new_id, sha1_hex};

/// The token of the first account (`acct_1`).
pub const TOKEN: &str = "netlify-test-token-s3cr3t";
/// The token of the second account (`acct_2`).
pub const OTHER_TOKEN: &str = "netlify-other-token-s3cr3t";

#[derive(Debug, Clone)]
pub struct Deploy {
    pub id: String,
    pub site_id: String,
    pub state: &'static str,
    /// path (with leading /) → sha1
    pub files: HashMap<String, String>,
    pub required: HashSet<String>,
    pub draft: bool,
    /// What `error_message` says in state `error` (a default when unset).
    pub error_message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub account: String,
    /// The deploy that is live.
    pub published: Option<String>,
}

#[derive(Debug)]
pub struct NetlifyState {
    pub accounts: Accounts,
    pub blobs: HashMap<String, Bytes>,
    pub sites: HashMap<String, Site>,
    pub deploys: HashMap<String, Deploy>,
}

impl Default for NetlifyState {
    fn default() -> Self {
        Self {
            accounts: Accounts::two(TOKEN, OTHER_TOKEN, "acct_"),
            blobs: HashMap::new(),
            sites: HashMap::new(),
            deploys: HashMap::new(),
        }
    }
}

pub type FakeNetlify = FakeServer<NetlifyState>;

pub fn start() -> FakeNetlify {
    FakeServer::start(NetlifyState::default(), handle)
}

impl FakeServer<NetlifyState> {
    /// The base URL deploy-service is configured with.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.url())
    }
}

fn error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"code": status, "message": message}))
}

fn object(d: &Deploy, site_name: &str) -> Value {
    let required: Vec<&String> = d.required.iter().collect();
    let error_message = (d.state == "error").then(|| {
        d.error_message
            .as_deref()
            .unwrap_or("Build script returned non-zero exit code")
    });
    json!({
        "id": d.id, "site_id": d.site_id, "state": d.state, "required": required,
        "deploy_ssl_url": format!("https://{}--{site_name}.netlify.app", d.id),
        "ssl_url": format!("https://{site_name}.netlify.app"),
        "url": format!("http://{site_name}.netlify.app"),
        "draft": d.draft, "error_message": error_message,
    })
}

fn handle(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut NetlifyState,
    script: &Script,
) -> HttpResponse {
    let Some(account) = state.accounts.of(req) else {
        return error(401, "Access Denied: your credentials are invalid");
    };
    if req.headers().get("user-agent").is_none() {
        return error(400, "a User-Agent header is required");
    }
    let Some(path) = req.path().strip_prefix("/api/v1/") else {
        return error(404, "Not Found");
    };
    let segments: Vec<&str> = path.split('/').collect();
    // A deploy or site of another account does not exist for this one.
    let own_deploy = |state: &NetlifyState, id: &str| {
        state
            .deploys
            .get(id)
            .and_then(|d| state.sites.get(&d.site_id))
            .is_some_and(|s| s.account == account.id)
    };
    if let [_, id, ..] = segments.as_slice()
        && segments[0] == "deploys"
        && !own_deploy(state, id)
    {
        return error(404, "Not Found");
    }
    if let [_, site, _, ..] = segments.as_slice()
        && segments[0] == "sites"
        && state
            .sites
            .get(*site)
            .is_none_or(|s| s.account != account.id)
    {
        return error(404, "Not Found");
    }
    match (req.method().as_str(), segments.as_slice()) {
        ("GET", ["user"]) => HttpResponse::Ok().json(json!({
            "id": account.id, "full_name": account.name,
            "email": format!("{}@example.com", account.id),
        })),
        ("POST", ["sites"]) => {
            let id = new_id("site-");
            let name = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string))
                .unwrap_or_else(|| id.clone());
            // Site names are subdomains of netlify.app: unique across every account.
            if state.sites.values().any(|s| s.name == name) {
                return error(422, "name already exists");
            }
            state.sites.insert(
                id.clone(),
                Site {
                    id: id.clone(),
                    name: name.clone(),
                    account: account.id.clone(),
                    published: None,
                },
            );
            HttpResponse::Created().json(json!({
                "id": id, "name": name, "url": format!("http://{name}.netlify.app"),
                "ssl_url": format!("https://{name}.netlify.app"),
                "admin_url": format!("https://app.netlify.com/sites/{name}"),
            }))
        }
        ("POST", ["sites", site, "deploys"]) => {
            let Ok(request) = serde_json::from_slice::<Value>(body) else {
                return error(422, "invalid JSON");
            };
            let Some(map) = request["files"].as_object() else {
                return error(422, "files is required");
            };
            let files: HashMap<String, String> = map
                .iter()
                .map(|(p, s)| {
                    let p = if p.starts_with('/') {
                        p.clone()
                    } else {
                        format!("/{p}")
                    };
                    (p, s.as_str().unwrap_or_default().to_string())
                })
                .collect();
            let required: HashSet<String> = files
                .values()
                .filter(|sha| !state.blobs.contains_key(*sha))
                .cloned()
                .collect();
            let deploy = Deploy {
                id: new_id("dep"),
                site_id: site.to_string(),
                state: if required.is_empty() {
                    "prepared"
                } else {
                    "uploading"
                },
                files,
                required,
                draft: request["draft"].as_bool().unwrap_or(false),
                error_message: None,
            };
            let answer = object(&deploy, &state.sites[*site].name);
            state.deploys.insert(deploy.id.clone(), deploy);
            HttpResponse::Ok().json(answer)
        }
        ("PUT", ["deploys", id, "files", rest @ ..]) => {
            let file_path = format!("/{}", rest.join("/"));
            let file_path = percent_decode(&file_path);
            let Some(deploy) = state.deploys.get_mut(*id) else {
                return error(404, "Not Found");
            };
            let Some(expected) = deploy.files.get(&file_path).cloned() else {
                return error(422, &format!("{file_path} is not part of the deploy"));
            };
            if sha1_hex(body) != expected {
                return error(422, "content does not match the digest");
            }
            deploy.required.remove(&expected);
            if deploy.required.is_empty() && deploy.state == "uploading" {
                deploy.state = "prepared";
            }
            state.blobs.insert(expected.clone(), body.clone());
            HttpResponse::Ok().json(json!({"id": expected, "path": file_path, "sha": expected}))
        }
        ("GET", ["deploys", id]) => match state.deploys.get_mut(*id) {
            Some(d) => {
                if d.required.is_empty() && !script.hold {
                    d.state = match d.state {
                        "prepared" => "processing",
                        "processing" => "ready",
                        other => other,
                    };
                } else if d.required.is_empty() && d.state == "prepared" {
                    d.state = "building";
                }
                let (site_id, live) = (d.site_id.clone(), d.state == "ready" && !d.draft);
                let deploy_id = d.id.clone();
                let site = state.sites.get_mut(&site_id).expect("the deploy's site");
                let answer = object(d, &site.name);
                if live {
                    site.published = Some(deploy_id);
                }
                HttpResponse::Ok().json(answer)
            }
            None => error(404, "Not Found"),
        },
        ("POST", ["deploys", id, "cancel"]) => match state.deploys.get_mut(*id) {
            Some(d) if d.state == "ready" => error(422, "deploy is already live"),
            Some(d) => {
                d.state = "canceled";
                let name = state.sites[&d.site_id].name.clone();
                HttpResponse::Created().json(object(d, &name))
            }
            None => error(404, "Not Found"),
        },
        ("POST", ["sites", site, "deploys", id, "restore"]) => {
            match state.deploys.get(*id).filter(|d| d.site_id == *site) {
                Some(d) if d.state == "ready" => {
                    let entry = state.sites.get_mut(*site).expect("checked above");
                    let answer = object(d, &entry.name);
                    entry.published = Some(id.to_string());
                    HttpResponse::Created().json(answer)
                }
                Some(_) => error(422, "only a ready deploy can be restored"),
                None => error(404, "Not Found"),
            }
        }
        _ => error(404, "Not Found"),
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&raw[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
