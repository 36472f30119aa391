//! Programming languages the operations accept, with the aliases people and models write.

/// A supported language, stored by its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language(&'static str);

/// Canonical names and their aliases; keep in step with the list in `ai.proto`.
const LANGUAGES: &[(&str, &[&str])] = &[
    ("python", &["py", "python3"]),
    ("javascript", &["js", "jsx", "node", "nodejs"]),
    ("typescript", &["ts", "tsx"]),
    ("rust", &["rs"]),
    ("go", &["golang"]),
    ("java", &[]),
    ("kotlin", &["kt"]),
    ("swift", &[]),
    ("c", &["h"]),
    ("cpp", &["c++", "cxx", "cc", "hpp"]),
    ("csharp", &["c#", "cs"]),
    ("ruby", &["rb"]),
    ("php", &[]),
    ("html", &["htm"]),
    ("css", &[]),
    ("sql", &[]),
    ("bash", &["sh", "shell", "zsh"]),
    ("json", &[]),
    ("yaml", &["yml"]),
];

impl Language {
    /// The language named `name` (canonical or alias, any case), if supported.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        LANGUAGES
            .iter()
            .find(|(canonical, aliases)| *canonical == name || aliases.contains(&name.as_str()))
            .map(|(canonical, _)| Self(canonical))
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        self.0
    }

    /// Every canonical name, for error messages.
    pub fn supported() -> String {
        LANGUAGES
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_canonical_names() {
        assert_eq!(Language::parse("PY").unwrap().name(), "python");
        assert_eq!(Language::parse("c++").unwrap().name(), "cpp");
        assert_eq!(
            Language::parse(" TypeScript ").unwrap().name(),
            "typescript"
        );
        assert!(Language::parse("brainfuck").is_none());
    }
}
