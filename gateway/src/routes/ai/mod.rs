//! `/api/ai`: generate, explain, fix, refactor and complete code, chat about it, and read one's
//! token usage, backed by ai-service. `generate` and `chat` stream as server-sent events when the
//! client sends `Accept: text/event-stream`.
//!
//! Every response carries `Server-Timing`, splitting the time spent waiting for the AI provider
//! (`provider`, from ai-service's `x-provider-ms`) from our own (`gateway`: gateway plus
//! ai-service), and `X-Cache: hit|miss` when ai-service said whether its prompt cache answered.
//!
//! The request and answer types are in `types`, their conversions to and from ai-service's
//! messages in `convert`, the mapping of ai-service's failures in
//! `errors`, `Server-Timing` in `timing`, the event streams in `streaming`, and the handlers in
//! `handlers`.

use std::future::Future;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use autocrea_proto::ai::v1 as pb;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::downstream::request;
use crate::identity::Caller;
use crate::problem::{ApiError, Problem};
use crate::routes::schema;
use crate::sse;
use crate::state::AppState;

mod convert;
mod errors;
mod handlers;
mod streaming;
mod timing;
mod types;

pub use errors::ai_error;
use handlers::*;
use streaming::*;
use timing::Timing;
pub use types::*;

const SERVICE: &str = "ai-service";
/// Metadata from ai-service: milliseconds spent waiting for the provider.
const PROVIDER_MS: &str = "x-provider-ms";
/// Metadata from ai-service: `hit` or `miss` of the prompt cache.
const CACHE: &str = "x-cache";

/// A metadata value of an ai-service answer, as text.
fn metadata<'a>(map: &'a tonic::metadata::MetadataMap, key: &str) -> Option<&'a str> {
    map.get(key).and_then(|v| v.to_str().ok())
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        handlers::generate,
        handlers::explain,
        handlers::fix,
        handlers::refactor,
        handlers::complete,
        handlers::chat,
        handlers::usage
    ),
    components(schemas(
        GenerateBody,
        GenerateResult,
        ExplainBody,
        ExplainResult,
        FixBody,
        FixResult,
        RefactorBody,
        RefactorResult,
        CompleteBody,
        CompleteResult,
        ChatBody,
        ChatMessage,
        ChatResult,
        AnswerUsage,
        Usage,
        UsagePeriod,
        OperationUsage,
        DeltaEvent,
        StreamErrorEvent,
    )),
    tags((name = "ai", description = "AI code operations and usage"))
)]
pub struct AiApi;

/// Registers the routes of this module on the `/api/ai` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/generate").post(generate))
        .service(web::resource("/explain").post(explain))
        .service(web::resource("/fix").post(fix))
        .service(web::resource("/refactor").post(refactor))
        .service(web::resource("/complete").post(complete))
        .service(web::resource("/chat").post(chat))
        .service(web::resource("/usage").get(usage));
}
