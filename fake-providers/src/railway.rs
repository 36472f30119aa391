//! A Railway public GraphQL API stand-in (`POST /graphql/v2`): `variableCollectionUpsert`,
//! `serviceInstanceDeployV2` (returns the deployment id), `deployment(id) {status url staticUrl}`
//! (QUEUED → BUILDING → DEPLOYING → SUCCESS), `deploymentCancel` and `deploymentRollback`
//! (Boolean). A project token comes in `Project-Access-Token`, an account token as `Bearer`;
//! both at once, or a wrong one, is `{data: null, errors: [{message: "Not Authorized"}]}` with
//! HTTP 200, as Railway answers.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::server::{FakeServer, Script, bearer};

pub const TOKEN: &str = "railway-test-token-s3cr3t";
pub const PROJECT: &str = "prj-railway-1";
pub const ENVIRONMENT: &str = "env-production-1";
pub const SERVICE: &str = "svc-web-1";

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub status: &'static str,
}

#[derive(Debug, Default)]
pub struct RailwayState {
    pub variables: HashMap<String, String>,
    pub deployments: HashMap<String, Deployment>,
    pub rollbacks: Vec<String>,
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

fn handle(
    req: &HttpRequest,
    body: &Bytes,
    state: &mut RailwayState,
    script: &Script,
) -> HttpResponse {
    if req.method().as_str() != "POST" || req.path() != "/graphql/v2" {
        return HttpResponse::NotFound().body("Not Found");
    }
    let project_token = req
        .headers()
        .get("project-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorized = match (project_token, bearer(req)) {
        (Some(token), None) | (None, Some(token)) => token == TOKEN,
        _ => false,
    };
    if !authorized {
        return errors("Not Authorized");
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return HttpResponse::BadRequest().json(json!({"errors": [{"message": "invalid JSON"}]}));
    };
    let query = request["query"].as_str().unwrap_or_default();
    let vars = &request["variables"];
    if query.contains("variableCollectionUpsert") {
        let input = &vars["input"];
        if input["projectId"] != PROJECT
            || input["environmentId"] != ENVIRONMENT
            || input["serviceId"] != SERVICE
        {
            return errors("Not Found");
        }
        if let Some(map) = input["variables"].as_object() {
            for (k, v) in map {
                state
                    .variables
                    .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        HttpResponse::Ok().json(json!({"data": {"variableCollectionUpsert": true}}))
    } else if query.contains("serviceInstanceDeployV2") {
        if vars["serviceId"] != SERVICE || vars["environmentId"] != ENVIRONMENT {
            return errors("Service not found");
        }
        let id = uuid::Uuid::new_v4().to_string();
        state.deployments.insert(
            id.clone(),
            Deployment {
                id: id.clone(),
                status: "QUEUED",
            },
        );
        HttpResponse::Ok().json(json!({"data": {"serviceInstanceDeployV2": id}}))
    } else if query.contains("deploymentCancel") {
        let id = vars["id"].as_str().unwrap_or_default();
        match state.deployments.get_mut(id) {
            Some(d) => {
                d.status = "REMOVED";
                HttpResponse::Ok().json(json!({"data": {"deploymentCancel": true}}))
            }
            None => errors("Deployment not found"),
        }
    } else if query.contains("deploymentRollback") {
        let id = vars["id"].as_str().unwrap_or_default().to_string();
        match state.deployments.get_mut(&id) {
            Some(d) if matches!(d.status, "SUCCESS" | "REMOVED") => {
                d.status = "SUCCESS";
                state.rollbacks.push(id);
                HttpResponse::Ok().json(json!({"data": {"deploymentRollback": true}}))
            }
            Some(_) => errors("Cannot rollback to this deployment"),
            None => errors("Deployment not found"),
        }
    } else if query.contains("deployment(") {
        let id = vars["id"].as_str().unwrap_or_default();
        match state.deployments.get_mut(id) {
            Some(d) => {
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
                HttpResponse::Ok().json(json!({"data": {"deployment": {
                    "id": d.id, "status": d.status, "url": null,
                    "staticUrl": "web-production-1.up.railway.app", "canRollback": true,
                }}}))
            }
            None => HttpResponse::Ok().json(json!({"data": {"deployment": null},
                "errors": [{"message": "Deployment not found"}]})),
        }
    } else {
        errors("Unknown operation")
    }
}
