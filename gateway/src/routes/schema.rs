//! JSON Schemas of the input rules that utoipa's attributes cannot state by themselves: text the
//! services trim before they check it, the character sets of paths and file names, bodies whose
//! valid fields depend on one another (written by hand, one schema per case), and the values
//! several routes share. Each pattern accepts exactly what the named validation accepts, so that a
//! client generated from `/openapi.json` sends only what the API takes and the API takes all it
//! sends.

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::routes::deploy::CreateDeployment;
use crate::routes::projects::PutFile;
use crate::routes::sandbox::{self, ExecuteRequest, SourceFile};

/// What `str::trim` removes: the characters of Unicode `White_Space` (as a class body).
const WHITE_SPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// What `char::is_control` finds (as a class body).
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// A pattern for text that is accepted once trimmed when it has `min` (0 or 1) to `max` (2 or
/// more) characters, every one in the class `inner`. `edge` is `inner` without white space: the
/// first and last character of trimmed text.
fn trimmed(inner: &str, edge: &str, min: usize, max: usize) -> String {
    let core = format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2);
    let core = if min == 0 {
        format!("(?:{core})?")
    } else {
        core
    };
    format!("^[{WHITE_SPACE}]*{core}[{WHITE_SPACE}]*$")
}

/// A string schema with `pattern`.
fn pattern(pattern: String) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
}

/// A pattern matching text with at least one character that `str::trim` keeps.
pub fn not_blank() -> String {
    format!("[^{WHITE_SPACE}]")
}

/// Text the AI operations take (inlined where used): 1 to `MAX` characters as sent, not blank.
pub struct NonBlankText<const MAX: usize>;

impl<const MAX: usize> PartialSchema for NonBlankText<MAX> {
    fn schema() -> RefOr<Schema> {
        pattern(not_blank()).max_length(Some(MAX)).into()
    }
}

impl<const MAX: usize> ToSchema for NonBlankText<MAX> {}

/// One of `values`, spelled exactly so.
pub fn one_of(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// A project name as project-service's `ProjectName` takes it: 1 to 100 characters once trimmed,
/// none of them a control character.
pub struct ProjectName;

impl PartialSchema for ProjectName {
    fn schema() -> RefOr<Schema> {
        name("A project name").into()
    }
}

impl ToSchema for ProjectName {}

/// An API key's name as the gateway's key validation takes it: the same rule as a project name.
pub struct KeyName;

impl PartialSchema for KeyName {
    fn schema() -> RefOr<Schema> {
        name("A name to recognise the key by").into()
    }
}

impl ToSchema for KeyName {}

/// 1 to 100 characters once trimmed, none of them a control character.
fn name(what: &str) -> ObjectBuilder {
    let inner = format!("[^{CONTROL}]");
    let edge = format!("[^{CONTROL}{WHITE_SPACE}]");
    pattern(trimmed(&inner, &edge, 1, 100)).description(Some(format!(
        "{what}: 1 to 100 characters once surrounding white space is trimmed, no control \
         characters"
    )))
}

/// A language or framework label as project-service's `TechLabel` takes it: up to 50 letters,
/// digits, spaces and `+ # . _ -` once trimmed.
pub struct TechLabel;

impl PartialSchema for TechLabel {
    fn schema() -> RefOr<Schema> {
        pattern(trimmed("[A-Za-z0-9+#._ -]", "[A-Za-z0-9+#._-]", 0, 50))
            .description(Some(
                "A language or framework label such as `typescript` or `next.js`: up to 50 \
                 letters, digits, spaces and `+ # . _ -` once surrounding white space is trimmed",
            ))
            .into()
    }
}

impl ToSchema for TechLabel {}

/// A project id: the UUID project-service gave the project.
pub struct ProjectId;

impl PartialSchema for ProjectId {
    fn schema() -> RefOr<Schema> {
        uuid("A project id (UUID)")
    }
}

impl ToSchema for ProjectId {}

/// A deployment id: the UUID deploy-service gave the deployment.
pub struct DeploymentId;

impl PartialSchema for DeploymentId {
    fn schema() -> RefOr<Schema> {
        uuid("A deployment id (UUID)")
    }
}

impl ToSchema for DeploymentId {}

/// An API key id: the UUID the gateway gave the key.
pub struct KeyId;

impl PartialSchema for KeyId {
    fn schema() -> RefOr<Schema> {
        uuid("An API key id (UUID)")
    }
}

impl ToSchema for KeyId {}

fn uuid(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uuid".into())))
        .description(Some(description))
        .into()
}

/// A file path inside a project as project-service's `FilePath` takes it: relative, `/` between
/// at most 16 segments, none empty, `.` or `..`, no backslash or control character, at most 512
/// bytes of UTF-8 (512 characters is the closest a schema can say).
pub struct FilePath;

impl PartialSchema for FilePath {
    fn schema() -> RefOr<Schema> {
        let any = format!(r"[^/\\{CONTROL}]");
        let no_dot = format!(r"[^./\\{CONTROL}]");
        let segment = format!(r"(?:{no_dot}{any}*|\.{no_dot}{any}*|\.\.{any}+)");
        pattern(format!("^{segment}(?:/{segment}){{0,15}}$"))
            .min_length(Some(1))
            .max_length(Some(512))
            .description(Some(
                "Path relative to the project root, e.g. `src/main.ts`: at most 16 segments \
                 separated by `/`, none of them empty, `.` or `..`; no `\\` or control \
                 characters; at most 512 bytes of UTF-8",
            ))
            .into()
    }
}

impl ToSchema for FilePath {}

/// A source file name of a sandbox run as sandbox-service's `FileName` takes it: relative, parts
/// of `A-Z a-z 0-9 . _ -` separated by `/`, no part empty, `.` or `..` or starting with `-`, at
/// most 100 characters (all ASCII), not starting with `.autocrea` (the sandbox's own files).
pub struct SandboxFileName;

impl PartialSchema for SandboxFileName {
    fn schema() -> RefOr<Schema> {
        const CHARS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
        const RESERVED: &str = "autocrea";
        // The characters of a part except those in `except`, as a class.
        let class = |except: &str| {
            let kept: String = CHARS.chars().filter(|c| !except.contains(*c)).collect();
            format!("[{}]", kept.replace('-', r"\-"))
        };
        let any = class("");
        let part = |after_dot: &str| format!(r"(?:{}{any}*|\.{after_dot}|\.\.{any}+)", class(".-"));
        // After a part's leading `.`: anything but `.` first, and in the first part not `autocrea`:
        // after each of its letters either the part ends or another character follows.
        let mut tail = String::new();
        let letters: Vec<char> = RESERVED.chars().collect();
        for next in letters[1..].iter().rev() {
            let deeper = if tail.is_empty() {
                String::new()
            } else {
                format!("|{next}{tail}")
            };
            tail = format!("(?:{}{any}*{deeper})?", class(&next.to_string()));
        }
        let first = part(&format!("(?:{}{any}*|a{tail})", class(".a")));
        let later = part(&format!("{}{any}*", class(".")));
        pattern(format!("^{first}(?:/{later})*$"))
            .max_length(Some(100))
            .description(Some(
                "Relative path such as `main.py` or `lib/util.js`: parts of letters, digits, \
                 `.`, `_` and `-` separated by `/`, none empty, `.`, `..` or starting with `-`; \
                 at most 100 characters; not starting with `.autocrea`",
            ))
            .into()
    }
}

impl ToSchema for SandboxFileName {}

/// The `projectId` a chat is about, as ai-service takes it: free text (a project id, usually) of
/// at most 128 characters once trimmed; blank means none.
pub fn chat_project_id() -> Schema {
    pattern(trimmed(r"[\s\S]", &not_blank(), 0, 128))
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(
            "The project the conversation is about (recorded with the usage): at most 128 \
             characters once surrounding white space is trimmed; blank or null means none",
        ))
        .into()
}

/// Canonical padded base64 of the standard alphabet, as `routes::projects` decodes it: whole quanta, then
/// at most one padded one whose unused bits are zero.
const BASE64_PATTERN: &str = "^(?:[A-Za-z0-9+/]{4})*\
     (?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

// By hand: which `content` is valid depends on `encoding`, one schema for each.
impl PartialSchema for PutFile {
    fn schema() -> RefOr<Schema> {
        let variant = |encoding: &str, required: bool, content: ObjectBuilder| {
            let object = ObjectBuilder::new()
                .property("content", content)
                .required("content")
                .property(
                    "encoding",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([encoding])),
                )
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            if required {
                object.required("encoding")
            } else {
                object
            }
        };
        OneOfBuilder::new()
            .description(Some(
                "The content as UTF-8 text (`encoding` `utf8`, the default), or as padded base64 \
                 of the standard alphabet (`encoding` `base64`) for binary content. At most the \
                 server's file size limit (2 MiB by default) once decoded.",
            ))
            .item(variant(
                "utf8",
                false,
                ObjectBuilder::new().schema_type(Type::String),
            ))
            .item(variant(
                "base64",
                true,
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(BASE64_PATTERN)),
            ))
            .into()
    }
}

impl ToSchema for PutFile {}

// By hand: what `env` may hold depends on `provider`, one schema for each. The rules are
// deploy-service's (`Provider`, `Target`, `EnvVars`).
impl PartialSchema for CreateDeployment {
    fn schema() -> RefOr<Schema> {
        let variant = |providers: &[&str], env: ObjectBuilder| {
            ObjectBuilder::new()
                .property("projectId", Ref::from_schema_name(ProjectId::name()))
                .required("projectId")
                .property(
                    "provider",
                    one_of(providers).description(Some(
                        "`vercel`, `netlify` or `railway` (also in upper case)",
                    )),
                )
                .required("provider")
                .property(
                    "target",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                        .enum_values(Some([
                            serde_json::json!("production"),
                            serde_json::json!("preview"),
                            serde_json::Value::Null,
                        ]))
                        .description(Some("`production` (the default) or `preview`")),
                )
                .property("env", env)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let env = |most: usize| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "Environment variables set on the provider's project before the build: at \
                     most 100, names of letters, digits and `_` not starting with a digit (at \
                     most 256), values of at most 64 KiB. Not for Netlify, which serves the \
                     files as they are.",
                ))
                .max_properties(Some(most))
                .property_names(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[A-Za-z_][A-Za-z0-9_]{0,255}$")),
                ))
                .additional_properties(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(64 * 1024)),
                ))
        };
        OneOfBuilder::new()
            .description(Some(
                "Body of `POST /api/deploy`: the caller's project to ship, where, and the \
                 environment of its build.",
            ))
            .item(variant(&["vercel", "railway"], env(100)))
            .item(variant(&["netlify"], env(0)))
            .into()
    }
}

impl ToSchema for CreateDeployment {}

// By hand: the program is either `code` or `files`, one schema for each. The bounds are
// sandbox-service's defaults (`RequestLimits`, `SANDBOX_MAX_TIMEOUT_MS`, `FileName`).
impl PartialSchema for ExecuteRequest {
    fn schema() -> RefOr<Schema> {
        let nullable_string =
            || ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
        let variant = |code: ObjectBuilder, files: ArrayBuilder, required: &str| {
            ObjectBuilder::new()
                .property(
                    "language",
                    one_of(sandbox::LANGUAGES).description(Some(
                        "`javascript`, `python` or `bash`, or an alias (also in upper case; see \
                         `GET /api/sandbox/languages`)",
                    )),
                )
                .required("language")
                .property("code", code)
                .property("files", files)
                .required(required)
                .property(
                    "entry",
                    nullable_string().description(Some(
                        "The file to run: one of `files[].name` (with `code`, the language's \
                         default entry). Needed with several files unless one has the \
                         language's default entry name (`main.py`, `main.js`, `main.sh`)",
                    )),
                )
                .property(
                    "stdin",
                    nullable_string()
                        .max_length(Some(1024 * 1024))
                        .description(Some("Standard input; at most 1 MiB")),
                )
                .property(
                    "args",
                    ArrayBuilder::new()
                        .items(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .max_length(Some(4096))
                                .pattern(Some(r"^[^\u0000]*$")),
                        )
                        .max_items(Some(64))
                        .description(Some(
                            "Command-line arguments (passed as data, never through a shell): \
                             at most 64 of at most 4,096 bytes, no NUL",
                        )),
                )
                .property(
                    "timeoutMs",
                    ObjectBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .minimum(Some(0))
                        .maximum(Some(60_000))
                        .description(Some(
                            "Wall-clock limit in milliseconds, at most the server's maximum \
                             (60,000 by default); 0 or absent for the server's default",
                        )),
                )
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let files = || {
            ArrayBuilder::new()
                .items(SourceFile::schema())
                .description(Some(
                    "The program as files, at most 32, their contents 512 KiB in all",
                ))
        };
        OneOfBuilder::new()
            .description(Some(
                "Body of `POST /api/sandbox/execute`: the program as one `code` string or as \
                 `files`, not both.",
            ))
            .item(variant(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(512 * 1024))
                    .description(Some("The program as one file; at most 512 KiB")),
                files().max_items(Some(0)),
                "code",
            ))
            .item(variant(
                nullable_string()
                    .max_length(Some(0))
                    .description(Some("Absent, null or empty with `files`")),
                files().min_items(Some(1)).max_items(Some(32)),
                "files",
            ))
            .into()
    }
}

impl ToSchema for ExecuteRequest {}
