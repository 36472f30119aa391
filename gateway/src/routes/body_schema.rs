//! The request bodies whose schema is written by hand, beside the shared rules in
//! `routes::schema`: which fields are valid depends on another field's value (a file's
//! `content` on its `encoding`, a deployment's fields on its provider, a run's on whether it
//! sends `code` or `files`), which derive macros cannot say.

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::routes::deploy::CreateDeployment;
use crate::routes::projects::PutFile;
use crate::routes::sandbox::{self, ExecuteRequest, SourceFile};
use crate::routes::schema::*;

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
