//! `/api/auth`: personal API keys and who the caller is. Managing keys takes a session token: a
//! key cannot create, list or revoke keys, so a leaked key cannot mint more.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::identity::{AuthMethod, Caller};
use crate::identity::{Scope, Scopes};
use crate::keys::ApiKey;
use crate::problem::{ApiError, ApiResult, FieldError};
use crate::routes::schema;
use crate::state::AppState;

/// Live keys one user may hold.
const MAX_KEYS_PER_USER: i64 = 50;
/// Longest lifetime of a key, in days.
const MAX_EXPIRY_DAYS: u32 = 3650;

/// Body of `POST /api/auth/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    /// A name to recognise the key by, 1 to 100 characters.
    #[schema(value_type = schema::KeyName)]
    pub name: String,
    /// Days until the key stops working (1 to 3650); never, when absent.
    #[serde(default, deserialize_with = "crate::routes::whole_number")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
    /// What the key may do; everything (`write`, `ai`, `sandbox`, `deploy`) when absent.
    /// `read` alone makes a read-only key.
    #[schema(value_type = Option<Vec<Scope>>, min_items = 1)]
    pub scopes: Option<Vec<String>>,
}

/// A new key, with its secret: shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The key's details.
    #[serde(flatten)]
    pub details: ApiKey,
    /// The secret key; use it as `Authorization: Bearer <key>`.
    pub key: String,
}

/// The caller's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Live keys, oldest first, without secrets.
    pub items: Vec<ApiKey>,
}

/// Who is calling.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The user id.
    pub user_id: String,
    /// `jwt` or `apiKey`.
    pub method: &'static str,
    /// The key's id, when authenticated with a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// What the caller may do.
    pub scopes: Vec<Scope>,
}

fn require_session(caller: &Caller) -> ApiResult<()> {
    match caller.method {
        AuthMethod::Jwt => Ok(()),
        AuthMethod::ApiKey { .. } => Err(ApiError::forbidden(
            "API keys cannot manage API keys; use a session token",
        )),
    }
}

fn validate(body: CreateKey) -> ApiResult<(String, Scopes, Option<u32>)> {
    let mut errors = Vec::new();
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError {
            field: "name".into(),
            message: "must be 1 to 100 characters without control characters".into(),
        });
    }
    let expires = match body.expires_in_days {
        None => None,
        Some(days @ 1..=3650) => Some(days as u32),
        Some(_) => {
            errors.push(FieldError {
                field: "expiresInDays".into(),
                message: format!("must be between 1 and {MAX_EXPIRY_DAYS}"),
            });
            None
        }
    };
    let scopes = match body.scopes {
        None => Scopes::full(),
        Some(list) if list.is_empty() => {
            errors.push(FieldError {
                field: "scopes".into(),
                message: "must name at least one of read, write, ai, sandbox, deploy".into(),
            });
            Scopes::default()
        }
        Some(list) => {
            let mut parsed = Vec::new();
            for item in list {
                match serde_json::from_value::<Scope>(serde_json::Value::String(item.clone())) {
                    Ok(scope) => parsed.push(scope),
                    Err(_) => errors.push(FieldError {
                        field: "scopes".into(),
                        message: format!(
                            "unknown scope {item:?}; use read, write, ai, sandbox or deploy"
                        ),
                    }),
                }
            }
            Scopes::of(parsed)
        }
    };
    if errors.is_empty() {
        Ok((name, scopes, expires))
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Create a personal API key. The response is the only time the key is shown.
#[utoipa::path(
    post, path = "/api/auth/keys", tag = "auth",
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = CreatedKey),
        (status = 400, description = "Invalid input", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Called with an API key", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller already has the most keys allowed (50); revoke one first", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Auth rate limit (5 / 15 min)", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_key(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateKey>,
) -> ApiResult<HttpResponse> {
    require_session(&caller)?;
    let (name, scopes, expires) = validate(body.into_inner())?;
    let count = state
        .keys
        .count(&caller.user_id)
        .await
        .map_err(ApiError::internal)?;
    if count >= MAX_KEYS_PER_USER {
        // A conflict with the caller's keys as they are, which revoking one resolves.
        return Err(ApiError::conflict(format!(
            "you already have {count} keys, the most allowed; revoke one first"
        )));
    }
    let (details, key) = state
        .keys
        .create(&caller.user_id, &name, &scopes, expires)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(user_id = %caller.user_id, key_id = %details.id, "API key created");
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(CreatedKey { details, key }))
}

/// List the caller's API keys, without their secrets.
#[utoipa::path(
    get, path = "/api/auth/keys", tag = "auth",
    responses(
        (status = 200, description = "The caller's keys", body = KeyList),
        (status = 403, description = "Called with an API key", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_keys(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    require_session(&caller)?;
    let items = state
        .keys
        .list(&caller.user_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(KeyList { items }))
}

/// Revoke an API key at once, on every gateway.
#[utoipa::path(
    delete, path = "/api/auth/keys/{id}", tag = "auth",
    params(("id" = schema::KeyId, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Called with an API key", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live key of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_session(&caller)?;
    let id = id.into_inner();
    if !state
        .keys
        .revoke(&caller.user_id, &id)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::not_found(format!(
            "you have no live API key {id}"
        )));
    }
    tracing::info!(user_id = %caller.user_id, key_id = %id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}

/// Who the caller is and how they authenticated.
#[utoipa::path(
    get, path = "/api/auth/me", tag = "auth",
    responses((status = 200, description = "The caller", body = Me)),
    security(("bearer" = []))
)]
pub async fn me(caller: Caller) -> HttpResponse {
    let (key_id, scopes) = match &caller.method {
        AuthMethod::Jwt => (None, Scopes::full().list()),
        AuthMethod::ApiKey { id, scopes } => (Some(id.clone()), scopes.list()),
    };
    HttpResponse::Ok().json(Me {
        user_id: caller.user_id.clone(),
        method: caller.method.name(),
        key_id,
        scopes,
    })
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(create_key, list_keys, revoke_key, me),
    components(schemas(ApiKey, Scope, schema::KeyId)),
    tags((name = "auth", description = "Personal API keys and the caller's identity"))
)]
pub struct AuthApi;

/// Registers the routes of this module on the `/api/auth` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/keys").post(create_key).get(list_keys))
        .service(web::resource("/keys/{id}").delete(revoke_key))
        .service(web::resource("/me").get(me));
}
