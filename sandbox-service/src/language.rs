//! The languages the sandbox runs and how each program is started.

/// A language the runtime image can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    /// Canonical name used in requests and results.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// File name given to `code`, and the entry picked when several files arrive without one.
    pub default_entry: &'static str,
    /// Interpreter started with the entry file as its first argument.
    pub interpreter: &'static str,
    /// Image label holding the interpreter version (written by `build-images.sh`).
    pub version_label: &'static str,
}

/// Every supported language, in the order ListLanguages reports them.
pub const LANGUAGES: &[Language] = &[
    Language {
        name: "javascript",
        aliases: &["js", "node", "nodejs"],
        default_entry: "main.js",
        interpreter: "node",
        version_label: "org.autocrea.sandbox.version.javascript",
    },
    Language {
        name: "python",
        aliases: &["py", "python3"],
        default_entry: "main.py",
        interpreter: "python3",
        version_label: "org.autocrea.sandbox.version.python",
    },
    Language {
        name: "bash",
        aliases: &["sh", "shell"],
        default_entry: "main.sh",
        interpreter: "bash",
        version_label: "org.autocrea.sandbox.version.bash",
    },
];

impl Language {
    /// The language called `name` (canonical or alias, any case).
    pub fn find(name: &str) -> Option<&'static Language> {
        let name = name.trim().to_ascii_lowercase();
        LANGUAGES
            .iter()
            .find(|l| l.name == name || l.aliases.contains(&name.as_str()))
    }

    /// The canonical names, for messages that list what is supported.
    pub fn supported() -> String {
        LANGUAGES
            .iter()
            .map(|l| l.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_alias_in_any_case() {
        assert_eq!(Language::find("JS").map(|l| l.name), Some("javascript"));
        assert_eq!(Language::find("python3").map(|l| l.name), Some("python"));
        assert!(Language::find("cobol").is_none());
        assert_eq!(Language::supported(), "javascript, python, bash");
    }
}
