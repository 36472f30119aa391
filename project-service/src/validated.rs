//! Validated request values. Each type checks its rules once, when it is built from raw input;
//! the rest of the service can rely on them. Violations name the JSON API's camelCase field.

use crate::error::Invalid;

/// A project name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    /// Longest name, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Trims `raw` and checks it.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("name", "must not be empty"));
        }
        let chars = name.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(Invalid::new(
                "name",
                format!(
                    "must be at most {} characters, got {chars}",
                    Self::MAX_CHARS
                ),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new(
                "name",
                "must not contain control characters such as line breaks or tabs",
            ));
        }
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A project description: at most 2000 characters, possibly empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Longest description, in characters.
    pub const MAX_CHARS: usize = 2000;

    /// Checks `raw`, kept as written (line breaks are welcome in descriptions).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(Invalid::new(
                "description",
                format!(
                    "must be at most {} characters, got {chars}",
                    Self::MAX_CHARS
                ),
            ));
        }
        // PostgreSQL text cannot hold NUL, so refuse it here rather than fail in the database.
        if raw.contains('\0') {
            return Err(Invalid::new(
                "description",
                "must not contain NUL characters",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A language or framework label such as `TypeScript`, `C#`, `next.js`: at most 50 characters
/// of `a-z A-Z 0-9 + # . _ -` and space, possibly empty. Surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TechLabel(String);

impl TechLabel {
    /// Longest label, in characters.
    pub const MAX_CHARS: usize = 50;

    /// Checks `raw` as the value of `field` (`language` or `framework`).
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let label = raw.trim();
        let chars = label.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(Invalid::new(
                field,
                format!(
                    "must be at most {} characters, got {chars}",
                    Self::MAX_CHARS
                ),
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "+#._- ".contains(*c)))
        {
            return Err(Invalid::new(
                field,
                format!("contains {bad:?}; use only letters, digits, spaces and + # . _ -"),
            ));
        }
        Ok(Self(label.to_string()))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A file path inside a project: relative, `/`-separated, no `.` or `..` or empty segments, no
/// backslash or control characters, at most 512 bytes and 16 segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath(String);

impl FilePath {
    /// Longest path, in bytes.
    pub const MAX_BYTES: usize = 512;
    /// Most segments (directories plus the file name).
    pub const MAX_SEGMENTS: usize = 16;

    /// Checks `raw`, which is kept exactly (paths are case- and space-sensitive).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let fail = |message: String| Err(Invalid::new("path", message));
        if raw.is_empty() {
            return fail("must not be empty".into());
        }
        if raw.len() > Self::MAX_BYTES {
            return fail(format!(
                "must be at most {} bytes, got {}",
                Self::MAX_BYTES,
                raw.len()
            ));
        }
        if raw.starts_with('/') {
            return fail("must be relative to the project root (no leading '/')".into());
        }
        if raw.contains('\\') {
            return fail("must use '/' to separate directories, not '\\'".into());
        }
        if raw.chars().any(char::is_control) {
            return fail("must not contain NUL or other control characters".into());
        }
        let segments: Vec<&str> = raw.split('/').collect();
        if segments.len() > Self::MAX_SEGMENTS {
            return fail(format!(
                "must have at most {} segments, got {}",
                Self::MAX_SEGMENTS,
                segments.len()
            ));
        }
        for segment in segments {
            match segment {
                "" => {
                    return fail("must not contain empty segments ('//' or a trailing '/')".into());
                }
                "." | ".." => {
                    return fail(format!(
                        "must not contain {segment:?} segments; give the path from the project root"
                    ));
                }
                _ => {}
            }
        }
        Ok(Self(raw.to_string()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The content of one file, no larger than the configured maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent(Vec<u8>);

impl FileContent {
    /// Checks that `bytes` is at most `max_bytes` long.
    pub fn new(bytes: Vec<u8>, max_bytes: u64) -> Result<Self, Invalid> {
        if bytes.len() as u64 > max_bytes {
            return Err(Invalid::new(
                "content",
                format!(
                    "file is {} bytes, over the limit of {max_bytes} bytes; split it or make it smaller",
                    bytes.len()
                ),
            ));
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, without copying them.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// How many projects one page of a listing holds: 0 means the default, larger values are
/// clamped to the maximum, negative ones are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(i64);

impl PageSize {
    /// Used when the caller asks for 0.
    pub const DEFAULT: i64 = 20;
    /// Larger requests get this many.
    pub const MAX: i64 = 100;

    /// Checks `raw`.
    pub fn parse(raw: i32) -> Result<Self, Invalid> {
        match raw {
            n if n < 0 => Err(Invalid::new(
                "pageSize",
                format!(
                    "must not be negative, got {n}; use 0 for the default of {}",
                    Self::DEFAULT
                ),
            )),
            0 => Ok(Self(Self::DEFAULT)),
            n => Ok(Self(i64::from(n).min(Self::MAX))),
        }
    }

    /// The number of projects.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// The version a caller last read, on which its update is based (1 or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedVersion(i64);

impl ExpectedVersion {
    /// Checks `raw`.
    pub fn parse(raw: i64) -> Result<Self, Invalid> {
        if raw < 1 {
            return Err(Invalid::new(
                "expectedVersion",
                format!("must be the project's version as last read (1 or more), got {raw}"),
            ));
        }
        Ok(Self(raw))
    }

    /// The version.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A project id as the service issues it (a UUID). Anything else cannot name a project, so
/// the caller gets NOT_FOUND, as for any unknown id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectId(String);

impl ProjectId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id in canonical form, or `None` when `raw` is not a UUID.
    pub fn parse(raw: &str) -> Option<Self> {
        uuid::Uuid::parse_str(raw)
            .ok()
            .map(|id| Self(id.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_name_is_trimmed_and_bounded() {
        assert_eq!(ProjectName::parse("  My app ").unwrap().as_str(), "My app");
        assert_eq!(ProjectName::parse("   ").unwrap_err().field, "name");
        assert!(ProjectName::parse(&"é".repeat(100)).is_ok());
        assert!(ProjectName::parse(&"é".repeat(101)).is_err());
        assert!(ProjectName::parse("a\nb").is_err());
        assert!(ProjectName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn description_is_bounded() {
        assert!(Description::parse("").is_ok());
        assert!(Description::parse("line\nbreak").is_ok());
        assert!(Description::parse(&"x".repeat(2000)).is_ok());
        assert_eq!(
            Description::parse(&"x".repeat(2001)).unwrap_err().field,
            "description"
        );
        assert!(Description::parse("a\0b").is_err());
    }

    #[test]
    fn tech_labels_allow_common_names() {
        for ok in [
            "",
            "TypeScript",
            "C#",
            "C++",
            "next.js",
            "vue_3",
            "Ruby on Rails",
            "a-b",
        ] {
            assert!(TechLabel::parse("language", ok).is_ok(), "{ok}");
        }
        for bad in ["rust!", "py/thon", "é", "a\tb"] {
            assert_eq!(
                TechLabel::parse("framework", bad).unwrap_err().field,
                "framework",
                "{bad}"
            );
        }
        assert!(TechLabel::parse("language", &"a".repeat(50)).is_ok());
        assert!(TechLabel::parse("language", &"a".repeat(51)).is_err());
    }

    #[test]
    fn file_paths_accept_ordinary_paths() {
        for ok in [
            "main.rs",
            "src/lib.rs",
            ".gitignore",
            "a/.hidden/b..c",
            "dir with space/file name.txt",
            "ünïcode/文件.md",
        ] {
            assert_eq!(FilePath::parse(ok).unwrap().as_str(), ok);
        }
        let sixteen = vec!["d"; 16].join("/");
        assert!(FilePath::parse(&sixteen).is_ok());
        assert!(FilePath::parse(&"a".repeat(512)).is_ok());
    }

    #[test]
    fn file_paths_refuse_escapes_and_oddities() {
        let seventeen = vec!["d"; 17].join("/");
        let long = "a".repeat(513);
        for bad in [
            "",
            "/etc/passwd",
            "../secret",
            "a/../../b",
            "./a",
            "a/./b",
            "a/..",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\u{1b}b",
            seventeen.as_str(),
            long.as_str(),
        ] {
            let err = FilePath::parse(bad).unwrap_err();
            assert_eq!(err.field, "path", "{bad:?}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn file_content_is_bounded() {
        assert!(FileContent::new(vec![0; 10], 10).is_ok());
        assert_eq!(
            FileContent::new(vec![0; 11], 10).unwrap_err().field,
            "content"
        );
    }

    #[test]
    fn page_size_defaults_and_clamps() {
        assert_eq!(PageSize::parse(0).unwrap().get(), 20);
        assert_eq!(PageSize::parse(7).unwrap().get(), 7);
        assert_eq!(PageSize::parse(100).unwrap().get(), 100);
        assert_eq!(PageSize::parse(1000).unwrap().get(), 100);
        assert_eq!(PageSize::parse(-1).unwrap_err().field, "pageSize");
    }

    #[test]
    fn expected_version_is_positive() {
        assert_eq!(ExpectedVersion::parse(1).unwrap().get(), 1);
        assert_eq!(
            ExpectedVersion::parse(0).unwrap_err().field,
            "expectedVersion"
        );
    }

    #[test]
    fn project_ids_are_uuids() {
        let id = ProjectId::generate();
        assert_eq!(ProjectId::parse(id.as_str()), Some(id));
        assert_eq!(ProjectId::parse("nope"), None);
        // Canonical form, so an upper-case spelling finds the same project.
        let upper = ProjectId::generate().as_str().to_uppercase();
        assert_eq!(
            ProjectId::parse(&upper).unwrap().as_str(),
            upper.to_lowercase()
        );
    }
}
