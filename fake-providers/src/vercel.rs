//! A Vercel API stand-in following the documented routes and shapes: `POST /v2/files` (raw
//! bytes, `x-vercel-digest`), `POST /v13/deployments` (`missing_files` for unknown digests,
//! `missing_project_settings` for a new project without settings, `deploymentId` to redeploy),
//! `GET /v13/deployments/{id}` (QUEUED → BUILDING → READY, one step per read),
//! `PATCH /v12/deployments/{id}/cancel`, `POST /v10/projects/{name}/env`, `POST /v11/projects`.
//! Errors are `{"error":{"code","message"}}`.

use std::collections::{HashMap, HashSet};

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::server::{FakeServer, Script, bearer, new_id, sha1_hex};

pub const TOKEN: &str = "vercel-test-token-s3cr3t";

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub name: String,
    pub url: String,
    pub state: &'static str,
    pub target: Option<String>,
    pub files: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct VercelState {
    pub blobs: HashMap<String, Bytes>,
    pub projects: HashSet<String>,
    pub env: HashMap<String, Vec<Value>>,
    pub deployments: HashMap<String, Deployment>,
}

pub type FakeVercel = FakeServer<VercelState>;

pub fn start() -> FakeVercel {
    FakeServer::start(VercelState::default(), handle)
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"error": {"code": code, "message": message}}))
}

fn object(d: &Deployment) -> Value {
    json!({
        "id": d.id, "name": d.name, "url": d.url, "readyState": d.state,
        "status": d.state, "target": d.target, "createdAt": 1_700_000_000_000i64,
        "inspectorUrl": format!("https://vercel.com/inspect/{}", d.id),
    })
}

/// Answers one request as Vercel would (the handler of [`start`]).
pub fn handle(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut VercelState,
    script: &Script,
) -> HttpResponse {
    if bearer(req).as_deref() != Some(TOKEN) {
        return error(403, "forbidden", "Not authorized");
    }
    let segments: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    match (req.method().as_str(), segments.as_slice()) {
        ("POST", ["v2", "files"]) => {
            let digest = req
                .headers()
                .get("x-vercel-digest")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                != Some("application/octet-stream")
            {
                return error(
                    400,
                    "bad_request",
                    "Content-Type must be application/octet-stream",
                );
            }
            if digest != sha1_hex(body) {
                return error(
                    400,
                    "invalid_digest",
                    "x-vercel-digest does not match the body",
                );
            }
            state.blobs.insert(digest, body.clone());
            HttpResponse::Ok().finish()
        }
        ("POST", ["v13", "deployments"]) => {
            let Ok(request) = serde_json::from_slice::<Value>(body) else {
                return error(400, "bad_request", "invalid JSON");
            };
            let name = request["name"].as_str().unwrap_or_default().to_string();
            if name.is_empty() {
                return error(400, "bad_request", "name is required");
            }
            let target = request["target"].as_str().map(str::to_string);
            let files = if let Some(previous) = request["deploymentId"].as_str() {
                match state.deployments.get(previous) {
                    Some(d) => d.files.clone(),
                    None => return error(404, "not_found", "Deployment not found"),
                }
            } else {
                let files = request["files"].as_array().cloned().unwrap_or_default();
                let missing: Vec<String> = files
                    .iter()
                    .filter_map(|f| f["sha"].as_str())
                    .filter(|sha| !state.blobs.contains_key(*sha))
                    .map(str::to_string)
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                if !missing.is_empty() {
                    return HttpResponse::BadRequest().json(json!({"error": {
                        "code": "missing_files", "message": "Missing files", "missing": missing,
                    }}));
                }
                if !state.projects.contains(&name) && request.get("projectSettings").is_none() {
                    return error(
                        400,
                        "missing_project_settings",
                        "Project settings are required",
                    );
                }
                files
            };
            state.projects.insert(name.clone());
            let id = new_id("dpl_");
            let deployment = Deployment {
                url: format!("{name}-{}.vercel.app", &id[4..12]),
                id: id.clone(),
                name,
                state: "QUEUED",
                target,
                files,
            };
            let answer = object(&deployment);
            state.deployments.insert(id, deployment);
            HttpResponse::Ok().json(answer)
        }
        ("GET", ["v13", "deployments", id]) => match state.deployments.get_mut(*id) {
            Some(d) => {
                if !script.hold {
                    d.state = match d.state {
                        "QUEUED" => "BUILDING",
                        "BUILDING" => "READY",
                        other => other,
                    };
                } else if d.state == "QUEUED" {
                    d.state = "BUILDING";
                }
                HttpResponse::Ok().json(object(d))
            }
            None => error(404, "not_found", "Deployment not found"),
        },
        ("PATCH", ["v12", "deployments", id, "cancel"]) => match state.deployments.get_mut(*id) {
            Some(d) if matches!(d.state, "READY" | "ERROR" | "CANCELED") => {
                error(400, "bad_request", "Deployment is already finished")
            }
            Some(d) => {
                d.state = "CANCELED";
                HttpResponse::Ok().json(object(d))
            }
            None => error(404, "not_found", "Deployment not found"),
        },
        ("POST", ["v10", "projects", name, "env"]) => {
            if !state.projects.contains(*name) {
                return error(404, "not_found", "Project not found");
            }
            let Ok(vars) = serde_json::from_slice::<Value>(body) else {
                return error(400, "bad_request", "invalid JSON");
            };
            let vars = match vars {
                Value::Array(items) => items,
                single => vec![single],
            };
            for var in &vars {
                if var["key"].as_str().is_none() || var["value"].as_str().is_none() {
                    return error(400, "bad_request", "key and value are required");
                }
            }
            state.env.entry(name.to_string()).or_default().extend(vars);
            HttpResponse::Created().json(json!({"created": [], "failed": []}))
        }
        ("POST", ["v11", "projects"]) => {
            let name = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string));
            match name {
                Some(name) => {
                    state.projects.insert(name.clone());
                    HttpResponse::Ok().json(json!({"id": format!("prj_{name}"), "name": name}))
                }
                None => error(400, "bad_request", "name is required"),
            }
        }
        _ => error(404, "not_found", "The requested route does not exist"),
    }
}
