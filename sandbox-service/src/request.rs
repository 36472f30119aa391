//! Validation of an `ExecuteRequest` into a [`RunSpec`]: every field checked once, here, with a
//! message that says what to fix.

use std::collections::HashSet;
use std::time::Duration;

use autocrea_proto::sandbox::v1::ExecuteRequest;
use service_runtime::invalid::{FieldViolation, Violations};

use crate::config::{Config, RequestLimits};
use crate::error::{Error, Result};
use crate::language::Language;

/// Longest file name accepted; it also fits the tar header without extensions.
pub const MAX_FILE_NAME_LEN: usize = 100;
/// Longest single command-line argument.
pub const MAX_ARG_LEN: usize = 4096;
/// Prefix of names the sandbox reserves for itself; user files may not use it.
pub const RESERVED_PREFIX: &str = ".autocrea";

/// A validated file name: relative, made of `[A-Za-z0-9._-]` components separated by `/`, no
/// component `.`/`..` or starting with `-` (so it can never be read as an interpreter option).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

impl FileName {
    /// Checks `name`; the error says what is wrong.
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        if name.is_empty() {
            return Err("file name is empty".into());
        }
        if name.len() > MAX_FILE_NAME_LEN {
            return Err(format!(
                "file name is {} bytes; at most {MAX_FILE_NAME_LEN}",
                name.len()
            ));
        }
        if name.starts_with(RESERVED_PREFIX) {
            return Err(format!(
                "file names starting with {RESERVED_PREFIX} are reserved"
            ));
        }
        for component in name.split('/') {
            if component.is_empty() || component == "." || component == ".." {
                return Err(format!(
                    "{name:?} must be a relative path without empty, '.' or '..' parts, such as src/main.py"
                ));
            }
            if component.starts_with('-') {
                return Err(format!("{name:?}: path parts may not start with '-'"));
            }
            if let Some(c) = component
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                return Err(format!(
                    "{name:?} contains {c:?}; use letters, digits, '.', '_', '-' and '/'"
                ));
            }
        }
        Ok(Self(name.to_string()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A source file of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it goes under the work directory.
    pub name: FileName,
    /// Its content.
    pub content: String,
}

/// Everything one run needs, validated.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The language.
    pub language: &'static Language,
    /// The program's files.
    pub files: Vec<SourceFile>,
    /// The file the interpreter starts.
    pub entry: FileName,
    /// Standard input.
    pub stdin: String,
    /// Arguments after the entry file.
    pub args: Vec<String>,
    /// Wall-clock limit of this run.
    pub timeout: Duration,
}

impl RunSpec {
    /// Validates `request` against the limits of `config`, reporting every wrong field at once.
    pub fn parse(request: ExecuteRequest, config: &Config) -> Result<Self> {
        let limits: &RequestLimits = &config.request_limits;
        let mut violations = Vec::new();
        let language = if request.language.trim().is_empty() {
            violations.push(FieldViolation::new(
                "language",
                format!("language is required; supported: {}", Language::supported()),
            ));
            None
        } else {
            let found = Language::find(&request.language);
            if found.is_none() {
                violations.push(FieldViolation::new(
                    "language",
                    format!(
                        "unknown language {:?}; supported: {}",
                        request.language,
                        Language::supported()
                    ),
                ));
            }
            found
        };

        let mut files = Vec::new();
        match (request.files.is_empty(), request.code.is_empty()) {
            (false, false) => violations.push(FieldViolation::new(
                "code",
                "give the program either as code or as files, not both",
            )),
            (true, true) => violations.push(FieldViolation::new(
                "files",
                "the program is missing: give code, or files with at least one file",
            )),
            (true, false) => {
                if request.code.len() > limits.max_code_bytes {
                    violations.push(FieldViolation::new(
                        "code",
                        format!(
                            "code is {} bytes; at most {} bytes are accepted",
                            request.code.len(),
                            limits.max_code_bytes
                        ),
                    ));
                }
                if let Some(language) = language {
                    files.push(SourceFile {
                        name: FileName(language.default_entry.to_string()),
                        content: request.code,
                    });
                }
            }
            (false, true) => {
                if request.files.len() > limits.max_files {
                    violations.push(FieldViolation::new(
                        "files",
                        format!(
                            "too many files: {} (at most {})",
                            request.files.len(),
                            limits.max_files
                        ),
                    ));
                }
                let total: usize = request.files.iter().map(|f| f.content.len()).sum();
                if total > limits.max_code_bytes {
                    violations.push(FieldViolation::new(
                        "files",
                        format!(
                            "files hold {total} bytes in total; at most {} bytes are accepted",
                            limits.max_code_bytes
                        ),
                    ));
                }
                let mut seen = HashSet::new();
                for (i, file) in request.files.into_iter().enumerate() {
                    match FileName::parse(&file.name) {
                        Ok(name) if !seen.insert(name.clone()) => {
                            violations.push(FieldViolation::new(
                                format!("files[{i}].name"),
                                format!("{:?} appears more than once", file.name),
                            ))
                        }
                        Ok(name) => files.push(SourceFile {
                            name,
                            content: file.content,
                        }),
                        Err(message) => violations
                            .push(FieldViolation::new(format!("files[{i}].name"), message)),
                    }
                }
            }
        }

        let entry = pick_entry(&request.entry, &files, language, &mut violations);

        if request.stdin.len() > limits.max_stdin_bytes {
            violations.push(FieldViolation::new(
                "stdin",
                format!(
                    "stdin is {} bytes; at most {} bytes are accepted",
                    request.stdin.len(),
                    limits.max_stdin_bytes
                ),
            ));
        }
        if request.args.len() > limits.max_args {
            violations.push(FieldViolation::new(
                "args",
                format!(
                    "too many arguments: {} (at most {})",
                    request.args.len(),
                    limits.max_args
                ),
            ));
        }
        for (i, arg) in request.args.iter().enumerate() {
            if arg.contains('\0') {
                violations.push(FieldViolation::new(
                    format!("args[{i}]"),
                    "arguments may not contain NUL characters",
                ));
            } else if arg.len() > MAX_ARG_LEN {
                violations.push(FieldViolation::new(
                    format!("args[{i}]"),
                    format!("argument is {} bytes; at most {MAX_ARG_LEN}", arg.len()),
                ));
            }
        }

        let timeout = match request.timeout_ms {
            None | Some(0) => Some(config.limits.timeout),
            Some(ms) if ms < 0 => {
                violations.push(FieldViolation::new(
                    "timeoutMs",
                    format!(
                        "timeoutMs is {ms}; give a positive number of milliseconds (at most {}), or omit it for the default of {}",
                        config.max_timeout.as_millis(),
                        config.limits.timeout.as_millis()
                    ),
                ));
                None
            }
            Some(ms) if u128::from(ms.unsigned_abs()) > config.max_timeout.as_millis() => {
                violations.push(FieldViolation::new(
                    "timeoutMs",
                    format!(
                        "timeoutMs is {ms}; at most {} milliseconds are allowed",
                        config.max_timeout.as_millis()
                    ),
                ));
                None
            }
            Some(ms) => Some(Duration::from_millis(ms.unsigned_abs())),
        };

        match (language, entry, timeout) {
            (Some(language), Some(entry), Some(timeout)) if violations.is_empty() => Ok(Self {
                language,
                files,
                entry,
                stdin: request.stdin,
                args: request.args,
                timeout,
            }),
            _ => Err(Error::InvalidRequest(Violations(violations))),
        }
    }
}

fn pick_entry(
    requested: &str,
    files: &[SourceFile],
    language: Option<&'static Language>,
    violations: &mut Vec<FieldViolation>,
) -> Option<FileName> {
    if files.is_empty() {
        return None;
    }
    if !requested.is_empty() {
        let found = files.iter().find(|f| f.name.as_str() == requested);
        if found.is_none() {
            violations.push(FieldViolation::new(
                "entry",
                format!("entry {requested:?} is not one of the files' names"),
            ));
        }
        return found.map(|f| f.name.clone());
    }
    if files.len() == 1 {
        return Some(files[0].name.clone());
    }
    let language = language?;
    let found = files
        .iter()
        .find(|f| f.name.as_str() == language.default_entry);
    if found.is_none() {
        violations.push(FieldViolation::new(
            "entry",
            format!(
                "entry is required with several files unless one is named {}",
                language.default_entry
            ),
        ));
    }
    found.map(|f| f.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_relative_and_plain() {
        assert!(FileName::parse("main.py").is_ok());
        assert!(FileName::parse("src/lib/util.js").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "-c",
            "a b",
            "$(id)",
            "x;rm",
            ".autocrea-stdin",
            "a/",
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
