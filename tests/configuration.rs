//! Configuration docs that cannot drift: every environment variable the services read is
//! documented in `.env.example` (the compose configuration; a variable compose sets by itself is
//! named there in a comment) and in a table of README.md, and neither names a variable that
//! nothing reads.
//!
//! "Read" means passed by name to a config reader in a service's sources (`parse_or("X", …)`,
//! `optional("X")`, `ConfigError::new("X", …)`, …: a call whose first argument is an upper-case
//! name with an underscore), outside test modules, test fixtures (`fake-providers`) and test
//! helpers (`service-runtime`'s `testing`). Compose files and the delivery scripts read variables
//! too (`${X}`); documenting those is allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | "tests" | ".git" | "fake-providers"
            ) {
                files_under(&path, extension, out);
            }
        } else if name.ends_with(extension) && name != "testing.rs" {
            out.push(path);
        }
    }
}

fn is_variable(name: &str) -> bool {
    name.len() > 2
        && name.contains('_')
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with('_')
        && !name.ends_with('_')
}

/// Names passed as the first argument of a call: `f("NAME"`, `f::<T>("NAME"`, with the call's
/// name: the reader, for the failure message.
fn read_names(source: &str) -> Vec<(String, String)> {
    // Test modules sit at the end of a file.
    let source = source
        .find("#[cfg(test)]\nmod tests")
        .map_or(source, |at| &source[..at]);
    let bytes = source.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = source[from..].find("(") {
        let open = from + offset;
        from = open + 1;
        let mut start = open + 1;
        while start < bytes.len() && bytes[start].is_ascii_whitespace() {
            start += 1;
        }
        if bytes.get(start) != Some(&b'"') {
            continue;
        }
        let Some(len) = source[start + 1..].find('"') else {
            continue;
        };
        let name = &source[start + 1..start + 1 + len];
        // What stands before the parenthesis: an identifier, or a turbofish `::<T>`.
        let before = &source[..open];
        let before = if before.ends_with('>') {
            before.rfind("::<").map_or(before, |at| &before[..at])
        } else {
            before
        };
        let reader: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !reader.is_empty() && is_variable(name) {
            found.push((name.to_string(), reader));
        }
    }
    found
}

/// Every upper-case name with an underscore in `text` (words of prose, `NAME=`, `${NAME}`).
fn mentioned(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| is_variable(w))
        .map(str::to_string)
        .collect()
}

/// The names in the first column of README.md's tables (`| \`NAME\` / \`OTHER\` | … |`).
fn readme_table_names(readme: &str) -> BTreeSet<String> {
    readme
        .lines()
        .filter_map(|line| line.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::trim)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|name| is_variable(name))
        .collect()
}

/// Variables read outside the services' config readers: by compose and the delivery scripts.
fn read_by_delivery() -> BTreeSet<String> {
    let mut files = vec![
        root().join("docker-compose.yml"),
        root().join("docker-compose.ci.yml"),
    ];
    files_under(&root().join("deploy"), ".sh", &mut files);
    files_under(&root().join("deploy"), ".yml", &mut files);
    files_under(&root().join("deploy"), ".yaml", &mut files);
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // `${NAME…}` and `$NAME` in compose and shell.
        for (at, _) in text.match_indices('$') {
            let rest = text[at + 1..].trim_start_matches('{');
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if is_variable(&name) {
                names.insert(name);
            }
        }
    }
    names
}

/// Read by the libraries we build on rather than by our config readers.
const READ_BY_DEPENDENCIES: &[&str] = &[
    // bollard's connect_with_defaults (sandbox-service).
    "DOCKER_HOST",
];

#[test]
fn every_variable_read_is_documented_and_every_documented_one_is_read() {
    let mut sources = Vec::new();
    files_under(root(), ".rs", &mut sources);
    let mut read: BTreeMap<String, String> = BTreeMap::new();
    for file in &sources {
        let relative = file.strip_prefix(root()).unwrap().display().to_string();
        if !relative.contains("/src/") && !relative.starts_with("src/") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (name, reader) in read_names(&text) {
            read.entry(name)
                .or_insert_with(|| format!("{relative} ({reader})"));
        }
    }
    assert!(
        read.contains_key("DATABASE_URL") && read.contains_key("SANDBOX_TIMEOUT_MS"),
        "the scan finds the services' variables: {read:?}"
    );

    let env_example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let in_env_example = mentioned(&env_example);
    let in_readme = readme_table_names(&readme);
    let mut delivery = read_by_delivery();
    delivery.extend(READ_BY_DEPENDENCIES.iter().map(|n| n.to_string()));

    let mut problems = Vec::new();
    for (name, place) in &read {
        if !in_env_example.contains(name) {
            problems.push(format!(
                "{name} (read in {place}) is missing from .env.example"
            ));
        }
        if !in_readme.contains(name) {
            problems.push(format!(
                "{name} (read in {place}) is missing from README.md's configuration tables"
            ));
        }
    }
    let assigned_in_env_example: BTreeSet<String> = env_example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_string()))
        .filter(|name| is_variable(name))
        .collect();
    for name in &assigned_in_env_example {
        if !read.contains_key(name) && !delivery.contains(name) {
            problems.push(format!(
                "{name} is set in .env.example but nothing reads it (no service, compose file or script)"
            ));
        }
    }
    for name in &in_readme {
        if !read.contains_key(name) && !delivery.contains(name) {
            problems.push(format!(
                "{name} is in README.md's tables but nothing reads it (no service, compose file or script)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "configuration docs drifted from the code:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scan_sees_the_ways_variables_are_read() {
    let names = read_names(
        r#"
        let a = parse_or("AI_MAX_RETRIES", 2)?;
        let b = parse_optional::<u64>("HSTS_MAX_AGE_SECS")?;
        let c = optional(
            "AUTH_JWKS_URL",
        );
        tracing::info!("NOT_A_READ_HERE");
        let d = format!("{}", "lower_case");
#[cfg(test)]
mod tests { fn t() { optional("ONLY_IN_TESTS"); } }
"#,
    );
    let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["AI_MAX_RETRIES", "HSTS_MAX_AGE_SECS", "AUTH_JWKS_URL"]
    );
    assert_eq!(
        readme_table_names("| `A_B` / `C_D` | `E_F` | x |\n| other | `G_H` |"),
        BTreeSet::from(["A_B".to_string(), "C_D".to_string()])
    );
}
