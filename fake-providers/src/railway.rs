//! A Railway stand-in: the public GraphQL API (`POST /graphql/v2`) and the CLI's upload
//! endpoint (`POST /project/{project}/environment/{environment}/up?serviceId=…`, a gzipped
//! tarball, kept for tests to inspect). Several accounts (bearer token → account, each with a
//! project and its `production` environment); every call is checked and every project,
//! service and deployment is visible to its account only. A wrong or missing token, like any
//! GraphQL error, is `{data: null, errors: [{message}]}` with HTTP 200, as Railway answers.
//!
//! Operations: `me`, `project(id)`, `projectCreate`, `serviceCreate`, `variableCollectionUpsert`
//! (per service), `deployment(id) {status url staticUrl canRollback}` (QUEUED → BUILDING →
//! DEPLOYING → SUCCESS, one step per read), `deployments(first, input)` (newest first),
//! `deploymentCancel`, `deploymentRollback` (Boolean; creates a new deployment, as Railway
//! does).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::server::{Account, Accounts, FakeServer, Script, new_id};

/// The token of the first account (`railway_user_1`), owner of [`PROJECT`].
pub const TOKEN: &str = "railway-test-token-s3cr3t";
/// The token of the second account (`railway_user_2`), owner of [`OTHER_PROJECT`].
pub const OTHER_TOKEN: &str = "railway-other-token-s3cr3t";
/// The first account's project and its environment.
pub const PROJECT: &str = "prj-railway-1";
pub const ENVIRONMENT: &str = "env-production-1";
/// The second account's project and its environment.
pub const OTHER_PROJECT: &str = "prj-railway-2";
pub const OTHER_ENVIRONMENT: &str = "env-production-2";

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub account: String,
    /// (id, name)
    pub environments: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub project: String,
    pub variables: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub status: &'static str,
    pub service: String,
    /// What Railway answers as `canRollback`.
    pub can_rollback: bool,
    /// Creation order.
    pub created: usize,
}

/// One `up` as received.
#[derive(Debug, Clone)]
pub struct Upload {
    pub project: String,
    pub environment: String,
    pub service: String,
    pub tarball: Bytes,
    pub deployment: String,
}

#[derive(Debug)]
pub struct RailwayState {
    pub accounts: Accounts,
    pub projects: HashMap<String, Project>,
    pub services: HashMap<String, Service>,
    pub deployments: HashMap<String, Deployment>,
    pub uploads: Vec<Upload>,
    /// Deployments rolled back to, in order.
    pub rollbacks: Vec<String>,
}

impl Default for RailwayState {
    fn default() -> Self {
        let accounts = Accounts::two(TOKEN, OTHER_TOKEN, "railway_user_");
        let mut projects = HashMap::new();
        for (id, env, account) in [
            (PROJECT, ENVIRONMENT, "railway_user_1"),
            (OTHER_PROJECT, OTHER_ENVIRONMENT, "railway_user_2"),
        ] {
            projects.insert(
                id.to_string(),
                Project {
                    id: id.to_string(),
                    name: format!("{account}'s project"),
                    account: account.to_string(),
                    environments: vec![
                        (format!("{env}-staging"), "staging".to_string()),
                        (env.to_string(), "production".to_string()),
                    ],
                },
            );
        }
        Self {
            accounts,
            projects,
            services: HashMap::new(),
            deployments: HashMap::new(),
            uploads: Vec::new(),
            rollbacks: Vec::new(),
        }
    }
}

impl RailwayState {
    fn own_project(&self, account: &Account, id: &str) -> Option<&Project> {
        self.projects.get(id).filter(|p| p.account == account.id)
    }

    fn own_service(&self, account: &Account, id: &str) -> bool {
        self.services
            .get(id)
            .is_some_and(|s| self.own_project(account, &s.project).is_some())
    }

    fn new_deployment(&mut self, service: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let created = self.deployments.len();
        self.deployments.insert(
            id.clone(),
            Deployment {
                id: id.clone(),
                status: "QUEUED",
                service: service.to_string(),
                can_rollback: true,
                created,
            },
        );
        id
    }

    /// The services of a project.
    pub fn services_of(&self, project: &str) -> Vec<&Service> {
        self.services
            .values()
            .filter(|s| s.project == project)
            .collect()
    }
}

pub type FakeRailway = FakeServer<RailwayState>;

pub fn start() -> FakeRailway {
    FakeServer::start(RailwayState::default(), handle)
}

impl FakeServer<RailwayState> {
    /// The bodies of the GraphQL requests whose query names `operation`.
    pub fn operations(&self, operation: &str) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.path == "/graphql/v2")
            .map(crate::server::Recorded::json)
            .filter(|r| r["query"].as_str().is_some_and(|q| q.contains(operation)))
            .collect()
    }

    pub fn api_url(&self) -> String {
        format!("{}/graphql/v2", self.url())
    }
}

fn errors(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({"data": null, "errors": [{"message": message}]}))
}

fn data(value: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "data": value }))
}

fn project_object(p: &Project) -> Value {
    let edges: Vec<Value> = p
        .environments
        .iter()
        .map(|(id, name)| json!({"node": {"id": id, "name": name}}))
        .collect();
    json!({"id": p.id, "name": p.name, "environments": {"edges": edges}})
}

fn handle(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut RailwayState,
    script: &Script,
) -> HttpResponse {
    // The CLI's upload endpoint answers plain HTTP errors.
    if let ["project", project, "environment", environment, "up"] = req
        .path()
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        return up(req, body, state, project, environment);
    }
    if req.method().as_str() != "POST" || req.path() != "/graphql/v2" {
        return HttpResponse::NotFound().body("Not Found");
    }
    // Account tokens only: a project token header, alone or beside a bearer, is refused here.
    if req.headers().contains_key("project-access-token") {
        return errors("Not Authorized");
    }
    let Some(account) = state.accounts.of(req) else {
        return errors("Not Authorized");
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return HttpResponse::BadRequest().json(json!({"errors": [{"message": "invalid JSON"}]}));
    };
    let query = request["query"].as_str().unwrap_or_default();
    let vars = &request["variables"];
    let id = vars["id"].as_str().unwrap_or_default().to_string();
    let input = &vars["input"];
    if query.contains("me {") {
        data(json!({"me": {"id": account.id, "name": account.name,
                           "email": format!("{}@example.com", account.id)}}))
    } else if query.contains("projectCreate") {
        let id = new_id("prj-");
        let project = Project {
            id: id.clone(),
            name: input["name"].as_str().unwrap_or("project").to_string(),
            account: account.id.clone(),
            environments: vec![(new_id("env-"), "production".to_string())],
        };
        let answer = project_object(&project);
        state.projects.insert(id, project);
        data(json!({ "projectCreate": answer }))
    } else if query.contains("project(") {
        match state.own_project(&account, &id) {
            Some(p) => data(json!({"project": project_object(p)})),
            None => errors("Project not found"),
        }
    } else if query.contains("serviceCreate") {
        let project = input["projectId"].as_str().unwrap_or_default();
        if state.own_project(&account, project).is_none() {
            return errors("Project not found");
        }
        let service = Service {
            id: new_id("svc-"),
            name: input["name"].as_str().unwrap_or("service").to_string(),
            project: project.to_string(),
            variables: HashMap::new(),
        };
        let answer = json!({"serviceCreate": {"id": service.id, "name": service.name}});
        state.services.insert(service.id.clone(), service);
        data(answer)
    } else if query.contains("variableCollectionUpsert") {
        let service = input["serviceId"].as_str().unwrap_or_default();
        let in_project = state
            .services
            .get(service)
            .is_some_and(|s| Some(s.project.as_str()) == input["projectId"].as_str());
        if !state.own_service(&account, service) || !in_project {
            return errors("Not Found");
        }
        let service = state.services.get_mut(service).expect("checked");
        for (k, v) in input["variables"].as_object().into_iter().flatten() {
            let value = v.as_str().unwrap_or_default().to_string();
            service.variables.insert(k.clone(), value);
        }
        data(json!({"variableCollectionUpsert": true}))
    } else if query.contains("deploymentCancel") {
        match state.deployments.get(&id).map(|d| d.service.clone()) {
            Some(service) if state.own_service(&account, &service) => {
                state.deployments.get_mut(&id).expect("found").status = "REMOVED";
                data(json!({"deploymentCancel": true}))
            }
            _ => errors("Deployment not found"),
        }
    } else if query.contains("deploymentRollback") {
        match state.deployments.get(&id).cloned() {
            Some(d) if state.own_service(&account, &d.service) => {
                if !d.can_rollback {
                    return errors("Cannot rollback to this deployment");
                }
                state.rollbacks.push(id);
                state.new_deployment(&d.service);
                data(json!({"deploymentRollback": true}))
            }
            _ => errors("Deployment not found"),
        }
    } else if query.contains("deployments(") {
        let service = input["serviceId"].as_str().unwrap_or_default();
        if !state.own_service(&account, service) {
            return errors("Service not found");
        }
        let mut of_service: Vec<&Deployment> = state
            .deployments
            .values()
            .filter(|d| d.service == service)
            .collect();
        of_service.sort_by_key(|d| std::cmp::Reverse(d.created));
        let first = vars["first"].as_u64().or_else(|| {
            // `first: 1` written in the query itself.
            query.contains("first: 1").then_some(1)
        });
        let edges: Vec<Value> = of_service
            .iter()
            .take(first.unwrap_or(u64::MAX) as usize)
            .map(|d| json!({"node": {"id": d.id, "status": d.status}}))
            .collect();
        data(json!({"deployments": {"edges": edges}}))
    } else if query.contains("deployment(") {
        let Some(service) = state.deployments.get(&id).map(|d| d.service.clone()) else {
            return errors("Deployment not found");
        };
        if !state.own_service(&account, &service) {
            return errors("Deployment not found");
        }
        let name = state.services[&service].name.clone();
        let d = state.deployments.get_mut(&id).expect("found");
        if !script.hold {
            d.status = match d.status {
                "QUEUED" => "BUILDING",
                "BUILDING" => "DEPLOYING",
                "DEPLOYING" => "SUCCESS",
                other => other,
            };
        } else if d.status == "QUEUED" {
            d.status = "BUILDING";
        }
        data(json!({"deployment": {
            "id": d.id, "status": d.status, "url": null,
            "staticUrl": format!("{name}-production.up.railway.app"),
            "canRollback": d.can_rollback,
        }}))
    } else {
        errors("Unknown operation")
    }
}

/// `railway up`: a gzipped tarball for a service of the caller's project.
fn up(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut RailwayState,
    project: &str,
    environment: &str,
) -> HttpResponse {
    let message = |status: u16, text: &str| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .json(json!({ "message": text }))
    };
    if req.method().as_str() != "POST" {
        return message(405, "Method Not Allowed");
    }
    let Some(account) = state.accounts.of(req) else {
        return message(401, "Not Authorized");
    };
    let Some(known) = state.own_project(&account, project) else {
        return message(404, "Project not found");
    };
    if !known.environments.iter().any(|(id, _)| id == environment) {
        return message(400, "Environment not found in the project");
    }
    let query: HashMap<String, String> = url_pairs(req.query_string()).into_iter().collect();
    let service = query.get("serviceId").cloned().unwrap_or_default();
    if state
        .services
        .get(&service)
        .is_none_or(|s| s.project != project)
    {
        return message(400, "Service not found in the project");
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/gzip") || !body.starts_with(&[0x1f, 0x8b]) {
        return message(400, "the body must be a gzipped tarball (application/gzip)");
    }
    let deployment = state.new_deployment(&service);
    state.uploads.push(Upload {
        project: project.to_string(),
        environment: environment.to_string(),
        service: service.clone(),
        tarball: body.clone(),
        deployment: deployment.clone(),
    });
    let name = state.services[&service].name.clone();
    HttpResponse::Ok().json(json!({
        "deploymentId": deployment,
        "url": format!("https://railway.com/project/{project}/service/{service}"),
        "logsUrl": format!("https://railway.com/project/{project}/service/{service}?id={deployment}"),
        "deploymentDomain": format!("{name}-production.up.railway.app"),
    }))
}

/// `a=b&c=d` with `%XX` and `+` decoded.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |raw: &str| {
        let raw = raw.replace('+', " ");
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len() + 1
                && let Some(b) = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
