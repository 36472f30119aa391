//! A Vercel API stand-in following the documented routes and shapes, with several accounts
//! (bearer token → account; every call checked, every resource visible to its account only):
//! `GET /v2/user`, `POST /v10/projects` (409 for a name taken in the account),
//! `GET /v9/projects/{idOrName}`, `POST /v2/files` (raw bytes, `x-vercel-digest`),
//! `POST /v13/deployments` (`missing_files` for unknown digests, `missing_project_settings` for a
//! new project without settings, `deploymentId` to redeploy), `GET /v13/deployments/{id}`
//! (QUEUED → BUILDING → READY, one step per read), `PATCH /v12/deployments/{id}/cancel`,
//! `POST /v10/projects/{idOrName}/env`. Errors are `{"error":{"code","message"}}`.

use std::collections::{HashMap, HashSet};

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::server::{Account, Accounts, FakeServer, Script, new_id, sha1_hex};

/// The token of the first account (`user_1`).
pub const TOKEN: &str = "vercel-test-token-s3cr3t";
/// The token of the second account (`user_2`).
pub const OTHER_TOKEN: &str = "vercel-other-token-s3cr3t";

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub name: String,
    pub url: String,
    pub state: &'static str,
    pub target: Option<String>,
    pub files: Vec<Value>,
    /// The account it was created in.
    pub account: String,
    /// The project id it belongs to.
    pub project: String,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub account: String,
    pub framework: Value,
}

#[derive(Debug)]
pub struct VercelState {
    pub accounts: Accounts,
    pub blobs: HashMap<String, Bytes>,
    /// By project id.
    pub projects: HashMap<String, Project>,
    /// Variables by project id.
    pub env: HashMap<String, Vec<Value>>,
    pub deployments: HashMap<String, Deployment>,
}

impl Default for VercelState {
    fn default() -> Self {
        Self {
            accounts: Accounts::two(TOKEN, OTHER_TOKEN, "user_"),
            blobs: HashMap::new(),
            projects: HashMap::new(),
            env: HashMap::new(),
            deployments: HashMap::new(),
        }
    }
}

impl VercelState {
    /// The account's project with this id or name.
    fn project(&self, account: &Account, id_or_name: &str) -> Option<&Project> {
        self.projects
            .values()
            .find(|p| p.account == account.id && (p.id == id_or_name || p.name == id_or_name))
    }

    /// The projects of an account.
    pub fn projects_of(&self, account: &str) -> Vec<&Project> {
        self.projects
            .values()
            .filter(|p| p.account == account)
            .collect()
    }
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
        "projectId": d.project,
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
    let Some(account) = state.accounts.of(req) else {
        return error(403, "forbidden", "Not authorized");
    };
    let segments: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    match (req.method().as_str(), segments.as_slice()) {
        ("GET", ["v2", "user"]) => HttpResponse::Ok().json(json!({"user": {
            "id": account.id, "username": account.name.to_lowercase().replace(' ', "-"),
            "name": account.name, "email": format!("{}@example.com", account.id),
        }})),
        ("POST", ["v10", "projects"]) => {
            let Ok(request) = serde_json::from_slice::<Value>(body) else {
                return error(400, "bad_request", "invalid JSON");
            };
            let Some(name) = request["name"].as_str().filter(|n| !n.is_empty()) else {
                return error(400, "bad_request", "name is required");
            };
            if state.project(&account, name).is_some() {
                return error(409, "conflict", "A project with this name already exists");
            }
            let project = Project {
                id: new_id("prj_"),
                name: name.to_string(),
                account: account.id.clone(),
                framework: request["framework"].clone(),
            };
            let answer = json!({"id": project.id, "name": project.name,
                                "framework": project.framework, "accountId": account.id});
            state.projects.insert(project.id.clone(), project);
            HttpResponse::Ok().json(answer)
        }
        ("GET", ["v9", "projects", id]) => match state.project(&account, id) {
            Some(p) => HttpResponse::Ok().json(json!({"id": p.id, "name": p.name})),
            None => error(404, "not_found", "Project not found"),
        },
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
        ("POST", ["v13", "deployments"]) => create_deployment(body, state, &account),
        ("GET", ["v13", "deployments", id]) => match state.deployments.get_mut(*id) {
            Some(d) if d.account == account.id => {
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
            _ => error(404, "not_found", "Deployment not found"),
        },
        ("PATCH", ["v12", "deployments", id, "cancel"]) => match state.deployments.get_mut(*id) {
            Some(d) if d.account != account.id => error(404, "not_found", "Deployment not found"),
            Some(d) if matches!(d.state, "READY" | "ERROR" | "CANCELED") => {
                error(400, "bad_request", "Deployment is already finished")
            }
            Some(d) => {
                d.state = "CANCELED";
                HttpResponse::Ok().json(object(d))
            }
            None => error(404, "not_found", "Deployment not found"),
        },
        ("POST", ["v10", "projects", id, "env"]) => {
            let Some(project) = state.project(&account, id).map(|p| p.id.clone()) else {
                return error(404, "not_found", "Project not found");
            };
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
            state.env.entry(project).or_default().extend(vars);
            HttpResponse::Created().json(json!({"created": [], "failed": []}))
        }
        _ => error(404, "not_found", "The requested route does not exist"),
    }
}

fn create_deployment(body: &Bytes, state: &mut VercelState, account: &Account) -> HttpResponse {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(400, "bad_request", "invalid JSON");
    };
    let name = request["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return error(400, "bad_request", "name is required");
    }
    let target = request["target"].as_str().map(str::to_string);
    let named = request["project"].as_str().unwrap_or(&name).to_string();
    let known = state.project(account, &named).map(|p| p.id.clone());
    let files = if let Some(previous) = request["deploymentId"].as_str() {
        match state.deployments.get(previous) {
            Some(d) if d.account == account.id => d.files.clone(),
            _ => return error(404, "not_found", "Deployment not found"),
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
        if known.is_none() && request.get("projectSettings").is_none() {
            return error(
                400,
                "missing_project_settings",
                "Project settings are required",
            );
        }
        files
    };
    // A first deploy by name creates the project, as Vercel does.
    let project = known.unwrap_or_else(|| {
        let project = Project {
            id: new_id("prj_"),
            name: named.clone(),
            account: account.id.clone(),
            framework: request["projectSettings"]["framework"].clone(),
        };
        let id = project.id.clone();
        state.projects.insert(id.clone(), project);
        id
    });
    let id = new_id("dpl_");
    let deployment = Deployment {
        url: format!("{name}-{}.vercel.app", &id[4..12]),
        id: id.clone(),
        name,
        state: "QUEUED",
        target,
        files,
        account: account.id.clone(),
        project,
    };
    let answer = object(&deployment);
    state.deployments.insert(id, deployment);
    HttpResponse::Ok().json(answer)
}
