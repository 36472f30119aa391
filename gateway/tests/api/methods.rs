//! HTTP methods over the wire: a known path with a method it does not serve answers 405 with an
//! `Allow` header naming the ones it does (the same as `/openapi.json` declares), the declared
//! ones still work, and the document states what the validation enforces.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The methods a path of the document declares, upper case.
fn declared_methods(item: &Value) -> BTreeSet<String> {
    item.as_object()
        .unwrap()
        .keys()
        .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
        .map(|k| k.to_uppercase())
        .collect()
}

/// A request path for a document path, with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0190a0b1-0000-7000-8000-000000000001")
        .replace("{path}", "src/main.ts")
}

fn allow(response: &reqwest::Response) -> BTreeSet<String> {
    response
        .headers()
        .get("allow")
        .unwrap_or_else(|| panic!("no Allow header on {}", response.url()))
        .to_str()
        .unwrap()
        .split(',')
        .map(|m| m.trim().to_string())
        .collect()
}

async fn document(gw: &Gateway) -> Value {
    let response = gw.http.get(gw.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_methods_get_405_with_the_declared_ones_in_allow() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("methods");
    let doc = document(gw).await;
    let mut paths: Vec<(String, BTreeSet<String>)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| (concrete(path), declared_methods(item)))
        .collect();
    assert!(paths.len() >= 20, "{} paths documented", paths.len());
    // Served but not operations of the API.
    for path in ["/openapi.json", "/docs"] {
        paths.push((path.to_string(), BTreeSet::from(["GET".to_string()])));
    }
    // OPTIONS is left to the CORS layer in front of the routes (preflights).
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "QUERY"];
    for (path, declared) in &paths {
        for method in methods.iter().filter(|m| !declared.contains(**m)) {
            let response = gw
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), gw.url(path))
                .bearer_auth(token(&user))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(&allow(&response), declared, "Allow of {method} {path}");
            let body = assert_problem(response, 405).await;
            assert_eq!(
                body["type"], "https://autocrea.dev/problems/method-not-allowed",
                "{method} {path}"
            );
            let detail = body["detail"].as_str().unwrap();
            assert!(detail.contains(*method), "{detail}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_methods_still_work() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("methods");
    for path in ["/health", "/metrics", "/openapi.json", "/docs"] {
        let response = gw.http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
    }

    // Every method of the project resources, which share paths.
    let project = gw.create_project(&user, "methods").await;
    let id = project["id"].as_str().unwrap();
    let response = gw.get("/api/projects", &user).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = gw
        .get(&format!("/api/projects/{id}"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = gw
        .patch(&format!("/api/projects/{id}"), &user)
        .json(&json!({"version": 1, "description": "changed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let file = format!("/api/projects/{id}/files/src/main.ts");
    let response = gw
        .put(&file, &user)
        .json(&json!({"content": "console.log(1)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = gw.get(&file, &user).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = gw
        .get(&format!("/api/projects/{id}/files"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = gw.delete(&file, &user).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let response = gw
        .delete(&format!("/api/projects/{id}"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    // The gateway's own routes: key management.
    let response = gw
        .post("/api/auth/keys", &user)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let key: Value = response.json().await.unwrap();
    let response = gw.get("/api/auth/keys", &user).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = gw
        .delete(
            &format!("/api/auth/keys/{}", key["id"].as_str().unwrap()),
            &user,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

/// The choice this API makes: under `/api` the guard answers before the route table, so a wrong
/// method without credentials gets 401 (and counts against the rate limit); outside `/api` there
/// is nothing to guard. Unknown paths stay 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_under_api_are_authenticated_first() {
    let stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("methods");

    let response = gw
        .http
        .delete(gw.url("/api/ai/usage"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("allow").is_none());
    assert_problem(response, 401).await;
    let response = gw.http.post(gw.url("/health")).send().await.unwrap();
    assert_eq!(allow(&response), BTreeSet::from(["GET".to_string()]));
    assert_problem(response, 405).await;

    for path in ["/api/nothing-here", "/api/projects/abc/nothing", "/nothing"] {
        let response = gw.delete(path, &user).send().await.unwrap();
        assert!(response.headers().get("allow").is_none(), "{path}");
        assert_problem(response, 404).await;
    }
}

/// A few of the declarations a generated client relies on, and that the enumerations are the
/// services' own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_declares_what_the_validation_enforces() {
    let stack = Stack::start(Db::Sqlite).await;
    let doc = document(&stack.gateway).await;
    let schemas = &doc["components"]["schemas"];
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
            None => schema.clone(),
        }
    };
    let parameter = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has parameters"))
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has {name}"))
            .clone()
    };

    // Ids are UUIDs; file paths have a pattern.
    for (path, method) in [
        ("/api/projects/{id}", "get"),
        ("/api/projects/{id}", "patch"),
        ("/api/projects/{id}/files/{path}", "put"),
    ] {
        let id = resolve(&parameter(path, method, "id")["schema"]);
        assert_eq!(id["format"], "uuid", "{method} {path}");
    }
    let id = resolve(&parameter("/api/deployments/{id}", "get", "id")["schema"]);
    assert_eq!(id["format"], "uuid");
    let file = resolve(&parameter("/api/projects/{id}/files/{path}", "get", "path")["schema"]);
    assert!(file["pattern"].as_str().unwrap().starts_with('^'));
    let project = parameter("/api/deployments", "get", "projectId");
    assert_eq!(project["schema"]["format"], "uuid");
    let limit = parameter("/api/projects", "get", "limit");
    assert_eq!(limit["schema"]["type"], "integer");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 100);

    // Every status an operation can answer, those of the layers around the handlers included.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            if path.starts_with("/api/") {
                for status in ["401", "429", "503"] {
                    assert!(has(status), "{method} {path} declares {status}");
                }
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(has(status), "{method} {path} declares {status}");
                }
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is problem+json"
                    );
                }
            }
        }
    }
    let create_key = &doc["paths"]["/api/auth/keys"]["post"]["responses"];
    assert!(create_key["409"].is_object());
    let patch = &doc["paths"]["/api/projects/{id}"]["patch"]["responses"];
    assert!(patch["404"].is_object() && patch["409"].is_object());

    // Bodies: required fields, bounds, integers.
    let update = &schemas["UpdateProject"];
    assert_eq!(update["required"], json!(["version"]));
    assert_eq!(update["properties"]["version"]["type"], "integer");
    assert_eq!(update["properties"]["version"]["minimum"], 1);
    let chat = &schemas["ChatBody"]["properties"]["messages"];
    assert_eq!(
        (chat["minItems"].clone(), chat["maxItems"].clone()),
        (json!(1), json!(50))
    );
    for (schema, field, most) in [
        ("GenerateBody", "prompt", 10_000),
        ("ExplainBody", "code", 60_000),
        ("FixBody", "error", 10_000),
        ("CompleteBody", "prefix", 20_000),
        ("ChatMessage", "content", 20_000),
    ] {
        let field_schema = &schemas[schema]["properties"][field];
        // Inlined: the field's own description next to the shared schema.
        let text = field_schema["oneOf"].get(0).unwrap_or(field_schema);
        assert_eq!(text["maxLength"], most, "{schema}.{field}");
        assert_eq!(
            text["pattern"],
            gateway::routes::schema::not_blank(),
            "{schema}.{field}"
        );
    }

    // Enumerations are the services' own.
    let ai_languages = schemas["AiLanguage"]["enum"].as_array().unwrap();
    for language in ai_languages {
        let language = language.as_str().unwrap();
        assert!(
            ai_service::language::Language::parse(language).is_some(),
            "ai-service takes {language}"
        );
    }
    for canonical in ai_service::language::Language::supported().split(", ") {
        assert!(ai_languages.contains(&json!(canonical)), "{canonical}");
    }
    let execute = &schemas["ExecuteRequest"]["oneOf"][0]["properties"]["language"]["enum"];
    let sandbox: BTreeSet<&str> = sandbox_service::language::LANGUAGES
        .iter()
        .flat_map(|l| std::iter::once(l.name).chain(l.aliases.iter().copied()))
        .collect();
    let documented: BTreeSet<&str> = execute
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(documented, sandbox);
}
