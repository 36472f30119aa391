//! The OpenAPI document, generated from the handlers, and a docs page that renders it with no
//! network access (no CDN scripts).

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::PROBLEM_JSON;
use crate::routes::{health, projects};

/// The gateway's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AutoCrea API",
        description = "Backend of an AI coding platform: projects, AI code operations, sandboxed runs, deployments. Errors are RFC 9457 problem+json."
    ),
    paths(
        health::health,
        health::ready,
        health::metrics,
        projects::create_project,
        projects::list_projects,
        projects::get_project,
        projects::update_project,
        projects::delete_project,
        projects::list_files,
        projects::put_file,
        projects::get_file,
        projects::move_file,
        projects::delete_file,
    ),
    components(schemas(
        crate::problem::Problem,
        crate::problem::FieldError,
        crate::routes::schema::ProjectId,
        crate::routes::schema::FilePath
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "projects", description = "Projects of the caller"),
        (name = "files", description = "Files of a project"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A session JWT (Clerk, RS256/ES256) or, in development, an HS256 token",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document: the core routes plus each route module's own part, with the answers of
/// the layers around the handlers.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::auth::AuthApi::openapi());
    doc.merge(crate::routes::ai::AiApi::openapi());
    doc.merge(crate::routes::sandbox::SandboxApi::openapi());
    doc.merge(crate::routes::deploy::DeployApi::openapi());
    doc.merge(crate::routes::deploy_targets::DeployTargetsApi::openapi());
    doc.merge(crate::routes::integrations::IntegrationsApi::openapi());
    add_common_responses(&mut doc);
    satisfiable_described_fields(&mut doc);
    doc
}

/// utoipa-gen 6 writes an inlined field schema that has a description (the AI operations' text
/// fields) as `allOf: [schema, {type: object, description}]`, which no string satisfies. This
/// rewrites each such property to `oneOf: [schema]` with the description beside it: what utoipa 5
/// wrote, and what clients and Schemathesis read.
fn satisfiable_described_fields(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{OneOfBuilder, Schema};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::Object(object)) = schema else {
            continue;
        };
        for property in object.properties.values_mut() {
            let RefOr::T(Schema::AllOf(all)) = property else {
                continue;
            };
            let [inner, RefOr::T(Schema::Object(note))] = all.items.as_slice() else {
                continue;
            };
            if !note.properties.is_empty() || note.description.is_none() {
                continue;
            }
            *property = OneOfBuilder::new()
                .item(inner.clone())
                .description(note.description.clone())
                .into();
        }
    }
}

/// Adds to every operation the answers that come from around its handler, so that each handler's
/// annotation lists only its own: the JSON body extractor (400, 413, 415) and the query, path and
/// header parsing (400) of `routes`, and for `/api` the guard (401, 403, 429, and 503 when the
/// shared rate-limit store is down) and the downstream call (503, 504), and the AI operations'
/// provider failures (502, 503) and budget (429). An operation that names one of these itself
/// keeps its own description.
fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let mut answers = Vec::new();
            // The AI operations' own ways to fail, ahead of the generic descriptions.
            if path.starts_with("/api/ai/") && operation.request_body.is_some() {
                answers.extend([
                    ("400", "Invalid input (`errors` names each field)"),
                    (
                        "429",
                        "Rate limited, or the monthly token budget is used up (see `Retry-After`)",
                    ),
                    (
                        "502",
                        "The AI provider refused our credentials or the request",
                    ),
                    (
                        "503",
                        "No AI provider configured, or the provider is overloaded (see \
                         `Retry-After`)",
                    ),
                ]);
            }
            if operation.request_body.is_some() {
                answers.extend([
                    (
                        "400",
                        "The body is not JSON of the documented shape, or a field is invalid \
                         (`errors` names each)",
                    ),
                    ("413", "The body is larger than the server's limit"),
                    (
                        "415",
                        "The body is not sent as `Content-Type: application/json`",
                    ),
                ]);
            }
            if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                answers.push(("400", "A parameter is invalid (`errors` names it)"));
            }
            if operation.security.is_some() {
                answers.extend([
                    (
                        "401",
                        "Missing, invalid or expired credentials (see `WWW-Authenticate`)",
                    ),
                    (
                        "429",
                        "The rate limit of the route group is used up (see `Retry-After`)",
                    ),
                    (
                        "503",
                        "A service behind the gateway, or the shared rate-limit store, cannot \
                         answer now (see `Retry-After`)",
                    ),
                ]);
                // Key management checks the kind of credentials itself (and says so); every other
                // group refuses an API key without its scope.
                if !path.starts_with("/api/auth/") {
                    answers.extend([
                        ("403", "An API key without the scope this operation needs"),
                        ("504", "A service behind the gateway did not answer in time"),
                    ]);
                }
            }
            for (status, description) in answers {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                PROBLEM_JSON,
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("Problem")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
    }
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// A human-readable rendering of `/openapi.json`.
pub async fn docs_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_SECURITY_POLICY,
            DOCS_CSP.as_str(),
        ))
        .body(DOCS_HTML)
}

/// The docs page's policy: its own inline script and style (pinned by hash, so no injected
/// script runs), `/openapi.json` from the same origin, nothing else, and no framing.
static DOCS_CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let hash = |open: &str, close: &str| {
        use base64::Engine;
        use sha2::Digest;
        let start = DOCS_HTML.find(open).map_or(0, |i| i + open.len());
        let end = DOCS_HTML[start..].find(close).map_or(start, |i| start + i);
        let digest = sha2::Sha256::digest(&DOCS_HTML.as_bytes()[start..end]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash("<script>", "</script>"),
        hash("<style>", "</style>"),
    )
});

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AutoCrea API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
main{max-width:980px;margin:0 auto;padding:20px}
.op{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:10px 0}
.op summary{cursor:pointer;padding:10px 14px;display:flex;gap:12px;align-items:center}
.m{font:600 12px monospace;padding:3px 8px;border-radius:4px;color:#fff;min-width:52px;text-align:center}
.get{background:#2b7be4}.post{background:#1f9d55}.put{background:#c27c0e}.patch{background:#8a4fd8}.delete{background:#d8394a}
.p{font-family:monospace}.body{padding:4px 16px 14px}pre{background:#f1f3f6;padding:10px;overflow:auto;border-radius:4px}
h2{margin-top:28px;text-transform:capitalize}table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
</style></head><body><header><h1>AutoCrea API</h1><div id="desc"></div></header><main id="main">Loading /openapi.json…</main>
<script>
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function schema(doc, s, depth) {
  if (!s || depth > 6) return {};
  if (s.$ref) return schema(doc, doc.components.schemas[s.$ref.split('/').pop()], depth + 1);
  if (s.type === 'object' || s.properties) {
    const o = {}; for (const [k, v] of Object.entries(s.properties || {})) o[k] = schema(doc, v, depth + 1); return o;
  }
  if (s.type === 'array') return [schema(doc, s.items, depth + 1)];
  if (s.oneOf) return schema(doc, s.oneOf[0], depth + 1);
  if (s.enum) return s.enum.join(' | ');
  return Array.isArray(s.type) ? s.type.join('|') : (s.type || 'any');
}
fetch('/openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('desc').textContent = doc.info.description || '';
  const groups = {};
  for (const [path, item] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(item)) {
    const tag = (op.tags || ['other'])[0]; (groups[tag] = groups[tag] || []).push({path, method, op});
  }
  let html = '';
  for (const [tag, ops] of Object.entries(groups)) {
    html += `<h2>${esc(tag)}</h2>`;
    for (const {path, method, op} of ops) {
      let body = `<p>${esc(op.description || op.summary || '')}</p>`;
      if (op.parameters?.length) body += '<table><tr><th>parameter</th><th>in</th><th>description</th></tr>' +
        op.parameters.map(p => `<tr><td class="p">${esc(p.name)}</td><td>${esc(p.in)}</td><td>${esc(p.description)}</td></tr>`).join('') + '</table>';
      const rb = op.requestBody?.content?.['application/json']?.schema;
      if (rb) body += `<h4>Request body</h4><pre>${esc(JSON.stringify(schema(doc, rb, 0), null, 2))}</pre>`;
      body += '<h4>Responses</h4><table>' + Object.entries(op.responses || {}).map(([code, r]) => {
        const c = Object.values(r.content || {})[0];
        return `<tr><td>${esc(code)}</td><td>${esc(r.description)}</td><td>${c ? '<pre>' + esc(JSON.stringify(schema(doc, c.schema, 0), null, 2)) + '</pre>' : ''}</td></tr>`;
      }).join('') + '</table>';
      html += `<details class="op"><summary><span class="m ${method}">${method.toUpperCase()}</span><span class="p">${esc(path)}</span><span>${esc(op.summary || '')}</span></summary><div class="body">${body}</div></details>`;
    }
  }
  document.getElementById('main').innerHTML = html;
}).catch(e => { document.getElementById('main').textContent = 'Cannot load /openapi.json: ' + e; });
</script></body></html>"#;

#[cfg(test)]
mod tests {
    /// Every property of every schema can hold a value: none is an `allOf` with a bare
    /// described object (which a string or number can never match).
    #[test]
    fn described_fields_keep_their_own_type() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (name, schema) in schemas {
            let Some(properties) = schema["properties"].as_object() else {
                continue;
            };
            for (field, property) in properties {
                let bare_object = property["allOf"].as_array().is_some_and(|all| {
                    all.iter()
                        .any(|s| s["type"] == "object" && s.get("properties").is_none())
                });
                assert!(!bare_object, "{name}.{field}: {property}");
            }
        }
        let prompt = &schemas["GenerateBody"]["properties"]["prompt"];
        assert_eq!(prompt["oneOf"][0]["type"], "string", "{prompt}");
        assert_eq!(prompt["oneOf"][0]["maxLength"], 10_000, "{prompt}");
        assert!(
            prompt["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("What to build")),
            "{prompt}"
        );
    }
}
