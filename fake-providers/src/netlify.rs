//! A Netlify API stand-in (base `/api/v1`) following the documented routes and shapes:
//! `POST /sites` (201), digest deploys `POST /sites/{site}/deploys` answering `required` with the
//! digests it does not hold yet (identical content listed once), `PUT
//! /deploys/{id}/files/{path}` (raw bytes), `GET /deploys/{id}` (uploading → processing → ready),
//! `POST /deploys/{id}/cancel` (201) and `POST /sites/{site}/deploys/{id}/restore` (201).
//! Errors are `{code, message}`.

use std::collections::{HashMap, HashSet};

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::server::{FakeServer, Script, bearer, new_id, sha1_hex};

pub const TOKEN: &str = "netlify-test-token-s3cr3t";

#[derive(Debug, Clone)]
pub struct Deploy {
    pub id: String,
    pub site_id: String,
    pub state: &'static str,
    /// path (with leading /) → sha1
    pub files: HashMap<String, String>,
    pub required: HashSet<String>,
    pub draft: bool,
}

#[derive(Debug, Default)]
pub struct NetlifyState {
    pub blobs: HashMap<String, Bytes>,
    pub sites: HashMap<String, Option<String>>,
    pub deploys: HashMap<String, Deploy>,
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

fn object(d: &Deploy) -> Value {
    let required: Vec<&String> = d.required.iter().collect();
    let error_message = (d.state == "error").then_some("Canceled build");
    json!({
        "id": d.id, "site_id": d.site_id, "state": d.state, "required": required,
        "deploy_ssl_url": format!("https://{}--{}.netlify.app", d.id, d.site_id),
        "ssl_url": format!("https://{}.netlify.app", d.site_id),
        "url": format!("http://{}.netlify.app", d.site_id),
        "draft": d.draft, "error_message": error_message,
    })
}

fn handle(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut NetlifyState,
    script: &Script,
) -> HttpResponse {
    if bearer(req).as_deref() != Some(TOKEN) {
        return error(401, "Access Denied: your credentials are invalid");
    }
    if req.headers().get("user-agent").is_none() {
        return error(400, "a User-Agent header is required");
    }
    let Some(path) = req.path().strip_prefix("/api/v1/") else {
        return error(404, "Not Found");
    };
    let segments: Vec<&str> = path.split('/').collect();
    match (req.method().as_str(), segments.as_slice()) {
        ("POST", ["sites"]) => {
            let id = new_id("site-");
            state.sites.insert(id.clone(), None);
            HttpResponse::Created().json(json!({
                "id": id, "name": id, "url": format!("http://{id}.netlify.app"),
                "ssl_url": format!("https://{id}.netlify.app"),
                "admin_url": format!("https://app.netlify.com/sites/{id}"),
            }))
        }
        ("POST", ["sites", site, "deploys"]) => {
            if !state.sites.contains_key(*site) {
                return error(404, "Not Found");
            }
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
            };
            let answer = object(&deploy);
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
                let answer = object(d);
                if d.state == "ready" && !d.draft {
                    state.sites.insert(d.site_id.clone(), Some(d.id.clone()));
                }
                HttpResponse::Ok().json(answer)
            }
            None => error(404, "Not Found"),
        },
        ("POST", ["deploys", id, "cancel"]) => match state.deploys.get_mut(*id) {
            Some(d) if d.state == "ready" => error(422, "deploy is already live"),
            Some(d) => {
                d.state = "error";
                HttpResponse::Created().json(object(d))
            }
            None => error(404, "Not Found"),
        },
        ("POST", ["sites", site, "deploys", id, "restore"]) => {
            match state.deploys.get(*id).filter(|d| d.site_id == *site) {
                Some(d) if d.state == "ready" => {
                    let answer = object(d);
                    state.sites.insert(site.to_string(), Some(id.to_string()));
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
