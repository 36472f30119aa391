//! JSON Schemas of the input rules that utoipa's attributes cannot state by themselves: text the
//! services trim before they check it, the character sets of paths and file names, bodies whose
//! valid fields depend on one another (their schemas are in `routes::body_schema`), and the values
//! several routes share. Each pattern accepts exactly what the named validation accepts, so that a
//! client generated from `/openapi.json` sends only what the API takes and the API takes all it
//! sends.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// What `str::trim` removes: the characters of Unicode `White_Space` (as a class body).
const WHITE_SPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// What `char::is_control` finds (as a class body).
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// A pattern for text that is accepted once trimmed when it has `min` (0 or 1) to `max` (2 or
/// more) characters, every one in the class `inner`. `edge` is `inner` without white space: the
/// first and last character of trimmed text.
pub(crate) fn trimmed(inner: &str, edge: &str, min: usize, max: usize) -> String {
    let core = format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2);
    let core = if min == 0 {
        format!("(?:{core})?")
    } else {
        core
    };
    format!("^[{WHITE_SPACE}]*{core}[{WHITE_SPACE}]*$")
}

/// A string schema with `pattern`.
pub(crate) fn pattern(pattern: String) -> ObjectBuilder {
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
pub(crate) fn name(what: &str) -> ObjectBuilder {
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

pub(crate) fn uuid(description: &str) -> RefOr<Schema> {
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
