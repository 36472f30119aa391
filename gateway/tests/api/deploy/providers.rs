//! Stand-ins for Vercel, Netlify and Railway: HTTP servers on 127.0.0.1:0 that follow the routes,
//! headers, JSON shapes and state progressions of each provider's documented API, closely enough
//! for deploy-service's real clients (see `deploy-service/tests/deploy/` for the fuller fakes
//! that also check digests and script failures). Each records the requests it receives, and a
//! "hold" switch keeps deployments building until released.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use serde_json::{Value, json};

pub const VERCEL_TOKEN: &str = "vercel-gw-test-token";
pub const NETLIFY_TOKEN: &str = "netlify-gw-test-token";
pub const RAILWAY_TOKEN: &str = "railway-gw-test-token";
pub const RAILWAY_PROJECT: &str = "prj-gw-1";
pub const RAILWAY_ENVIRONMENT: &str = "env-gw-1";
pub const RAILWAY_SERVICE: &str = "svc-gw-1";
pub const RAILWAY_URL: &str = "web-gw-1.up.railway.app";

/// One request as a fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What every fake shares with its handler.
#[derive(Debug, Default)]
pub struct Shared<S> {
    pub requests: Vec<Recorded>,
    pub hold: bool,
    pub provider: S,
}

type Handler<S> = fn(&HttpRequest, &Bytes, &mut S, bool) -> HttpResponse;

/// A running fake provider.
pub struct Fake<S> {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared<S>>>,
    handle: ServerHandle,
}

impl<S: Default + Send + 'static> Fake<S> {
    fn start(handler: Handler<S>) -> Self {
        let shared = Arc::new(Mutex::new(Shared::<S>::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake provider");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let state = shared.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let state = state.clone();
                    App::new().default_service(web::to(move |req: HttpRequest, body: Bytes| {
                        let state = state.clone();
                        async move {
                            let mut shared = state.lock().unwrap();
                            shared.requests.push(Recorded {
                                method: req.method().to_string(),
                                path: req.path().to_string(),
                                body: body.clone(),
                            });
                            let hold = shared.hold;
                            handler(&req, &body, &mut shared.provider, hold)
                        }
                    }))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            });
        });
        let handle = rx.recv().expect("fake provider started");
        Self {
            addr,
            shared,
            handle,
        }
    }
}

impl<S> Fake<S> {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Requests with `method` whose path starts with `prefix`.
    pub fn matching(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// Keep deployments building (true) or let them finish (false).
    pub fn hold(&self, hold: bool) {
        self.shared.lock().unwrap().hold = hold;
    }
}

impl<S> Drop for Fake<S> {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stopping waits for the server's own runtime; do it off the caller's runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(handle.stop(false));
        });
    }
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

fn status(code: u16) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(code).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Vercel: `POST /v2/files`, `POST /v13/deployments` (answers `missing_files` for digests it has
// not received; `deploymentId` redeploys), `GET /v13/deployments/{id}` (QUEUED → BUILDING →
// READY, one step per read), `PATCH /v12/deployments/{id}/cancel`, `POST /v10/projects/{name}/env`
// (404 for an unknown project), `POST /v11/projects`. Errors are `{"error": {code, message}}`.

#[derive(Debug, Default)]
pub struct VercelState {
    blobs: HashSet<String>,
    projects: HashSet<String>,
    deployments: HashMap<String, (String, &'static str, Vec<Value>)>,
}

pub type FakeVercel = Fake<VercelState>;

pub fn vercel() -> FakeVercel {
    Fake::start(vercel_handler)
}

fn vercel_error(code: u16, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status(code)).json(json!({"error": {"code": kind, "message": message}}))
}

fn vercel_object(id: &str, name: &str, state: &str) -> Value {
    json!({
        "id": id, "name": name, "readyState": state, "status": state,
        "url": format!("{name}-{}.vercel.app", &id[4..12]),
        "createdAt": 1_700_000_000_000i64,
    })
}

fn vercel_handler(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut VercelState,
    hold: bool,
) -> HttpResponse {
    if bearer(req) != Some(VERCEL_TOKEN) {
        return vercel_error(403, "forbidden", "Not authorized");
    }
    let segments: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    let json = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    match (req.method().as_str(), segments.as_slice()) {
        ("POST", ["v2", "files"]) => {
            match req
                .headers()
                .get("x-vercel-digest")
                .and_then(|v| v.to_str().ok())
            {
                Some(digest) => {
                    state.blobs.insert(digest.to_string());
                    HttpResponse::Ok().json(json!({}))
                }
                None => vercel_error(400, "bad_request", "x-vercel-digest is required"),
            }
        }
        ("POST", ["v13", "deployments"]) => {
            let Some(name) = json["name"].as_str().map(str::to_string) else {
                return vercel_error(400, "bad_request", "name is required");
            };
            let files = if let Some(previous) = json["deploymentId"].as_str() {
                match state.deployments.get(previous) {
                    Some((_, _, files)) => files.clone(),
                    None => return vercel_error(404, "not_found", "Deployment not found"),
                }
            } else {
                let files = json["files"].as_array().cloned().unwrap_or_default();
                let missing: HashSet<&str> = files
                    .iter()
                    .filter_map(|f| f["sha"].as_str())
                    .filter(|sha| !state.blobs.contains(*sha))
                    .collect();
                if !missing.is_empty() {
                    return HttpResponse::BadRequest().json(json!({"error": {
                        "code": "missing_files", "message": "Missing files", "missing": missing,
                    }}));
                }
                files
            };
            state.projects.insert(name.clone());
            let id = new_id("dpl_");
            let answer = vercel_object(&id, &name, "QUEUED");
            state.deployments.insert(id, (name, "QUEUED", files));
            HttpResponse::Ok().json(answer)
        }
        ("GET", ["v13", "deployments", id]) => match state.deployments.get_mut(*id) {
            Some((name, ready_state, _)) => {
                *ready_state = match (*ready_state, hold) {
                    ("QUEUED", _) => "BUILDING",
                    ("BUILDING", false) => "READY",
                    (other, _) => other,
                };
                HttpResponse::Ok().json(vercel_object(id, name, ready_state))
            }
            None => vercel_error(404, "not_found", "Deployment not found"),
        },
        ("PATCH", ["v12", "deployments", id, "cancel"]) => match state.deployments.get_mut(*id) {
            Some((_, "READY" | "ERROR" | "CANCELED", _)) => {
                vercel_error(400, "bad_request", "Deployment is already finished")
            }
            Some((name, ready_state, _)) => {
                *ready_state = "CANCELED";
                HttpResponse::Ok().json(vercel_object(id, name, ready_state))
            }
            None => vercel_error(404, "not_found", "Deployment not found"),
        },
        ("POST", ["v10", "projects", name, "env"]) => {
            if !state.projects.contains(*name) {
                return vercel_error(404, "not_found", "Project not found");
            }
            HttpResponse::Created().json(json!({"created": json, "failed": []}))
        }
        ("POST", ["v11", "projects"]) => match json["name"].as_str() {
            Some(name) => {
                state.projects.insert(name.to_string());
                HttpResponse::Ok().json(json!({"id": format!("prj_{name}"), "name": name}))
            }
            None => vercel_error(400, "bad_request", "name is required"),
        },
        _ => vercel_error(404, "not_found", "The requested route does not exist"),
    }
}

// ---------------------------------------------------------------------------------------------
// Netlify (base `/api/v1`): `POST /sites` (201), `POST /sites/{site}/deploys` with the path→SHA-1
// map, answering `required` with the digests it lacks; `PUT /deploys/{id}/files/{path}`;
// `GET /deploys/{id}` (prepared → processing → ready); `POST /deploys/{id}/cancel` (201, the
// deploy becomes `error` "Canceled build"); `POST /sites/{site}/deploys/{id}/restore` (201).
// Errors are `{code, message}`.

#[derive(Debug)]
struct NetlifyDeploy {
    site: String,
    state: &'static str,
    files: HashMap<String, String>,
    required: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct NetlifyState {
    blobs: HashSet<String>,
    sites: HashSet<String>,
    deploys: HashMap<String, NetlifyDeploy>,
}

pub type FakeNetlify = Fake<NetlifyState>;

pub fn netlify() -> FakeNetlify {
    Fake::start(netlify_handler)
}

impl FakeNetlify {
    /// The base URL deploy-service is configured with.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.url())
    }
}

fn netlify_error(code: u16, message: &str) -> HttpResponse {
    HttpResponse::build(status(code)).json(json!({"code": code, "message": message}))
}

fn netlify_object(id: &str, d: &NetlifyDeploy) -> Value {
    json!({
        "id": id, "site_id": d.site, "state": d.state,
        "required": d.required.iter().collect::<Vec<_>>(),
        "ssl_url": format!("https://{}.netlify.app", d.site),
        "deploy_ssl_url": format!("https://{id}--{}.netlify.app", d.site),
        "error_message": (d.state == "error").then_some("Canceled build"),
    })
}

fn netlify_handler(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut NetlifyState,
    hold: bool,
) -> HttpResponse {
    if bearer(req) != Some(NETLIFY_TOKEN) {
        return netlify_error(401, "Access Denied: your credentials are invalid");
    }
    let Some(path) = req.path().strip_prefix("/api/v1/") else {
        return netlify_error(404, "Not Found");
    };
    let segments: Vec<&str> = path.split('/').collect();
    match (req.method().as_str(), segments.as_slice()) {
        ("POST", ["sites"]) => {
            let id = new_id("site-");
            state.sites.insert(id.clone());
            HttpResponse::Created().json(json!({
                "id": id, "name": id, "ssl_url": format!("https://{id}.netlify.app"),
            }))
        }
        ("POST", ["sites", site, "deploys"]) => {
            if !state.sites.contains(*site) {
                return netlify_error(404, "Not Found");
            }
            let json = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
            let Some(map) = json["files"].as_object() else {
                return netlify_error(422, "files is required");
            };
            let files: HashMap<String, String> = map
                .iter()
                .map(|(p, sha)| (p.clone(), sha.as_str().unwrap_or_default().to_string()))
                .collect();
            let required: HashSet<String> = files
                .values()
                .filter(|sha| !state.blobs.contains(*sha))
                .cloned()
                .collect();
            let deploy = NetlifyDeploy {
                site: site.to_string(),
                state: if required.is_empty() {
                    "prepared"
                } else {
                    "uploading"
                },
                files,
                required,
            };
            let id = new_id("dep");
            let answer = netlify_object(&id, &deploy);
            state.deploys.insert(id, deploy);
            HttpResponse::Ok().json(answer)
        }
        ("PUT", ["deploys", id, "files", rest @ ..]) => {
            let Some(deploy) = state.deploys.get_mut(*id) else {
                return netlify_error(404, "Not Found");
            };
            let file = format!("/{}", rest.join("/"));
            let Some(sha) = deploy.files.get(&file).cloned() else {
                return netlify_error(422, &format!("{file} is not part of the deploy"));
            };
            deploy.required.remove(&sha);
            if deploy.required.is_empty() && deploy.state == "uploading" {
                deploy.state = "prepared";
            }
            state.blobs.insert(sha.clone());
            HttpResponse::Ok().json(json!({"id": sha, "path": file}))
        }
        ("GET", ["deploys", id]) => match state.deploys.get_mut(*id) {
            Some(d) => {
                if d.required.is_empty() {
                    d.state = match (d.state, hold) {
                        ("prepared", _) => "processing",
                        ("processing", false) => "ready",
                        (other, _) => other,
                    };
                }
                HttpResponse::Ok().json(netlify_object(id, d))
            }
            None => netlify_error(404, "Not Found"),
        },
        ("POST", ["deploys", id, "cancel"]) => match state.deploys.get_mut(*id) {
            Some(d) if d.state == "ready" => netlify_error(422, "deploy is already live"),
            Some(d) => {
                d.state = "error";
                HttpResponse::Created().json(netlify_object(id, d))
            }
            None => netlify_error(404, "Not Found"),
        },
        ("POST", ["sites", site, "deploys", id, "restore"]) => {
            match state.deploys.get(*id).filter(|d| d.site == *site) {
                Some(d) if d.state == "ready" => {
                    HttpResponse::Created().json(netlify_object(id, d))
                }
                Some(_) => netlify_error(422, "only a ready deploy can be restored"),
                None => netlify_error(404, "Not Found"),
            }
        }
        _ => netlify_error(404, "Not Found"),
    }
}

// ---------------------------------------------------------------------------------------------
// Railway public GraphQL API (`POST /graphql/v2`, token in `Project-Access-Token`):
// `variableCollectionUpsert`, `serviceInstanceDeployV2`, `deployment(id)` (QUEUED → BUILDING →
// DEPLOYING → SUCCESS), `deploymentCancel`, `deploymentRollback`. Errors come with HTTP 200 as
// `{data: null, errors: [{message}]}`.

#[derive(Debug, Default)]
pub struct RailwayState {
    deployments: HashMap<String, &'static str>,
}

pub type FakeRailway = Fake<RailwayState>;

pub fn railway() -> FakeRailway {
    Fake::start(railway_handler)
}

impl FakeRailway {
    pub fn api_url(&self) -> String {
        format!("{}/graphql/v2", self.url())
    }

    /// The GraphQL operations received whose query mentions `operation`.
    pub fn operations(&self, operation: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .map(Recorded::json)
            .filter(|r| r["query"].as_str().is_some_and(|q| q.contains(operation)))
            .collect()
    }
}

fn graphql_errors(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"data": null, "errors": [{"message": message}]}))
}

fn railway_handler(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut RailwayState,
    hold: bool,
) -> HttpResponse {
    if req.method().as_str() != "POST" || req.path() != "/graphql/v2" {
        return HttpResponse::NotFound().body("Not Found");
    }
    let token = req
        .headers()
        .get("project-access-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(RAILWAY_TOKEN) || bearer(req).is_some() {
        return graphql_errors("Not Authorized");
    }
    let request = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let query = request["query"].as_str().unwrap_or_default();
    let vars = &request["variables"];
    let id = vars["id"].as_str().unwrap_or_default().to_string();
    let data = |value: Value| HttpResponse::Ok().json(json!({ "data": value }));
    if query.contains("variableCollectionUpsert") {
        let input = &vars["input"];
        if input["projectId"] != RAILWAY_PROJECT || input["serviceId"] != RAILWAY_SERVICE {
            return graphql_errors("Not Found");
        }
        data(json!({"variableCollectionUpsert": true}))
    } else if query.contains("serviceInstanceDeployV2") {
        if vars["serviceId"] != RAILWAY_SERVICE || vars["environmentId"] != RAILWAY_ENVIRONMENT {
            return graphql_errors("Service not found");
        }
        let id = uuid::Uuid::new_v4().to_string();
        state.deployments.insert(id.clone(), "QUEUED");
        data(json!({ "serviceInstanceDeployV2": id }))
    } else if query.contains("deploymentCancel") {
        match state.deployments.get_mut(&id) {
            Some(status) => {
                *status = "REMOVED";
                data(json!({"deploymentCancel": true}))
            }
            None => graphql_errors("Deployment not found"),
        }
    } else if query.contains("deploymentRollback") {
        match state.deployments.get_mut(&id) {
            Some(status) if matches!(*status, "SUCCESS" | "REMOVED") => {
                *status = "SUCCESS";
                data(json!({"deploymentRollback": true}))
            }
            Some(_) => graphql_errors("Cannot rollback to this deployment"),
            None => graphql_errors("Deployment not found"),
        }
    } else if query.contains("deployment(") {
        match state.deployments.get_mut(&id) {
            Some(status) => {
                *status = match (*status, hold) {
                    ("QUEUED", _) => "BUILDING",
                    ("BUILDING", false) => "DEPLOYING",
                    ("DEPLOYING", false) => "SUCCESS",
                    (other, _) => other,
                };
                data(json!({"deployment": {
                    "id": id, "status": status, "url": null, "staticUrl": RAILWAY_URL,
                }}))
            }
            None => graphql_errors("Deployment not found"),
        }
    } else {
        graphql_errors("Unknown operation")
    }
}
