//! `/api/sandbox`: run code in sandbox-service's hardened containers, as one JSON answer or as a
//! stream of output events.

use actix_web::{HttpRequest, HttpResponse, web};
use autocrea_proto::sandbox::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::downstream::request;
use crate::identity::Caller;
use crate::problem::{Answered, ApiError, ApiResult};
use crate::routes::schema;
use crate::sse;
use crate::state::AppState;

const SERVICE: &str = "sandbox-service";

/// One source file of a run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Relative path such as `main.py` or `lib/util.js`; unique among the files of a run.
    #[schema(value_type = schema::SandboxFileName)]
    pub name: String,
    /// UTF-8 content.
    pub content: String,
}

/// Body of `POST /api/sandbox/execute`: the program as `files` or as one `code` string. Its schema
/// is in `routes::schema`: one case for each.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteRequest {
    /// `javascript`, `python` or `bash` (see `GET /api/sandbox/languages`).
    pub language: String,
    /// The program as files.
    #[serde(default)]
    pub files: Vec<SourceFile>,
    /// The program as one file.
    pub code: Option<String>,
    /// The file to run, one of `files[].name`.
    pub entry: Option<String>,
    /// Standard input.
    pub stdin: Option<String>,
    /// Command-line arguments (passed as data, never through a shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// Wall-clock limit in milliseconds (default and maximum are the service's configuration).
    #[serde(default, deserialize_with = "crate::routes::whole_number")]
    pub timeout_ms: Option<i64>,
}

/// The names and aliases of the languages sandbox-service runs (any case).
pub const LANGUAGES: &[&str] = &[
    "javascript",
    "js",
    "node",
    "nodejs",
    "python",
    "py",
    "python3",
    "bash",
    "sh",
    "shell",
];

/// The limits a run had.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Wall-clock limit.
    pub timeout_ms: i64,
    /// Memory, with no extra swap.
    pub memory_bytes: i64,
    /// CPU share in thousandths of a CPU.
    pub cpu_millis: i64,
    /// Processes and threads.
    pub pids: i64,
    /// Output kept before the run is stopped.
    pub output_bytes: i64,
    /// Size of the writable `/work` and `/tmp`.
    pub tmpfs_bytes: i64,
    /// Largest file the program may write.
    pub file_size_bytes: i64,
    /// Open files.
    pub open_files: i64,
    /// Network access (always false).
    pub network: bool,
}

/// The outcome of a run. A failing, crashing or stopped program is still a 200 with these flags.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteResult {
    /// Standard output (up to the output limit).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status; 128+N for signal N.
    pub exit_code: i32,
    /// The signal that ended the program, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Killed at the wall-clock limit.
    pub timed_out: bool,
    /// Killed for reaching the memory limit.
    pub oom_killed: bool,
    /// Output reached the limit; the rest was dropped and the program stopped.
    pub truncated: bool,
    /// Wall-clock time of the program.
    pub duration_ms: i64,
    /// CPU time of the run, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_time_ms: Option<i64>,
    /// Peak memory of the run, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<i64>,
    /// The limits the run had.
    pub limits: Option<Limits>,
    /// Canonical language name.
    pub language: String,
    /// Interpreter version.
    pub version: String,
}

impl From<pb::ExecuteResponse> for ExecuteResult {
    fn from(r: pb::ExecuteResponse) -> Self {
        Self {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
            signal: r.signal,
            timed_out: r.timed_out,
            oom_killed: r.oom_killed,
            truncated: r.truncated,
            duration_ms: r.duration_ms,
            cpu_time_ms: r.cpu_time_ms,
            peak_memory_bytes: r.peak_memory_bytes,
            limits: r.limits.map(|l| Limits {
                timeout_ms: l.timeout_ms,
                memory_bytes: l.memory_bytes,
                cpu_millis: l.cpu_millis,
                pids: l.pids,
                output_bytes: l.output_bytes,
                tmpfs_bytes: l.tmpfs_bytes,
                file_size_bytes: l.file_size_bytes,
                open_files: l.open_files,
                network: l.network,
            }),
            language: r.language,
            version: r.version,
        }
    }
}

/// A language the sandbox runs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Language {
    /// Name to use in `language`.
    pub language: String,
    /// Interpreter version.
    pub version: String,
    /// Other accepted names.
    pub aliases: Vec<String>,
    /// File run when a request has `code` or no `entry`.
    pub default_entry: String,
}

/// The languages the sandbox runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct LanguageList {
    /// Languages with versions.
    pub items: Vec<Language>,
}

#[derive(Serialize)]
struct OutputChunk {
    text: String,
}

/// Run a program in a fresh, locked-down container. With `Accept: text/event-stream` the output
/// streams as `stdout` and `stderr` events, then one `result` event.
#[utoipa::path(
    post, path = "/api/sandbox/execute", tag = "sandbox",
    request_body = ExecuteRequest,
    responses(
        (status = 200, description = "The run's outcome (also for programs that fail or are stopped)", body = ExecuteResult),
        (status = 400, description = "Invalid request (unknown language, too much code, bad timeout...)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limit, or too many runs queued", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "No Docker engine or runtime image; the detail says which", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn execute(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<ExecuteRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let message = pb::ExecuteRequest {
        language: body.language,
        files: body
            .files
            .into_iter()
            .map(|f| pb::SourceFile {
                name: f.name,
                content: f.content,
            })
            .collect(),
        code: body.code.unwrap_or_default(),
        entry: body.entry.unwrap_or_default(),
        stdin: body.stdin.unwrap_or_default(),
        args: body.args,
        timeout_ms: body.timeout_ms,
    };
    let mut client = state.downstream.sandbox.clone();
    if sse::wants_stream(&req) {
        let slot = state.streams.open(&caller)?;
        let stream = client
            .execute_stream(request(&caller, message))
            .await
            .answered(SERVICE)?;
        return Ok(slot.respond(HttpResponse::Ok(), stream, run_step));
    }
    let result = client
        .execute(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(ExecuteResult::from(result)))
}

/// What one outcome of a streamed run sends: `stdout` and `stderr` events, then the `result`.
/// Dropping the gRPC stream (the client went away or stopped reading) stops the run.
fn run_step(outcome: Result<Option<pb::ExecuteEvent>, tonic::Status>) -> sse::Step {
    use pb::execute_event::Event;
    match outcome {
        Ok(Some(pb::ExecuteEvent { event })) => match event {
            Some(Event::Stdout(text)) => {
                sse::Step::Continue(Some(sse::event("stdout", &OutputChunk { text })))
            }
            Some(Event::Stderr(text)) => {
                sse::Step::Continue(Some(sse::event("stderr", &OutputChunk { text })))
            }
            Some(Event::Result(result)) => {
                sse::Step::Finish(Some(sse::event("result", &ExecuteResult::from(result))))
            }
            None => sse::Step::Continue(None),
        },
        Ok(None) => sse::Step::Finish(Some(sse::event(
            "error",
            &serde_json::json!({
                "status": 502,
                "detail": "the run's stream ended before its result; try again",
            }),
        ))),
        Err(status) => {
            let problem = ApiError::from_status(&status, SERVICE);
            sse::Step::Finish(Some(sse::event(
                "error",
                &serde_json::json!({
                    "status": problem.status().as_u16(),
                    "detail": problem.to_string(),
                }),
            )))
        }
    }
}

/// The languages the sandbox runs, with versions.
#[utoipa::path(
    get, path = "/api/sandbox/languages", tag = "sandbox",
    responses(
        (status = 200, description = "Languages", body = LanguageList),
        (status = 503, description = "sandbox-service unavailable", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn languages(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    let list = state
        .downstream
        .sandbox
        .clone()
        .list_languages(request(&caller, pb::ListLanguagesRequest {}))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(LanguageList {
        items: list
            .languages
            .into_iter()
            .map(|l| Language {
                language: l.language,
                version: l.version,
                aliases: l.aliases,
                default_entry: l.default_entry,
            })
            .collect(),
    }))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(execute, languages),
    components(schemas(schema::SandboxFileName)),
    tags((name = "sandbox", description = "Run code in hardened, single-use containers"))
)]
pub struct SandboxApi;

/// Registers the routes of this module on the `/api/sandbox` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/execute").post(execute))
        .service(web::resource("/languages").get(languages));
}
