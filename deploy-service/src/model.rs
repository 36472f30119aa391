//! The domain of deploy-service: providers, targets, the deployment state machine, and the
//! validated request values.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Invalid;

/// A hosting provider deploy-service ships to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Vercel REST API.
    Vercel,
    /// Netlify REST API.
    Netlify,
    /// Railway GraphQL API.
    Railway,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Self; 3] = [Self::Vercel, Self::Netlify, Self::Railway];

    /// Parses the wire name (`vercel`, `netlify`, `railway`; any case).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "vercel" => Ok(Self::Vercel),
            "netlify" => Ok(Self::Netlify),
            "railway" => Ok(Self::Railway),
            "" => Err(Invalid::new(
                "provider",
                "is required: one of vercel, netlify, railway",
            )),
            _ => Err(Invalid::new(
                "provider",
                format!("unknown provider {raw:?}: use vercel, netlify or railway"),
            )),
        }
    }

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vercel => "vercel",
            Self::Netlify => "netlify",
            Self::Railway => "railway",
        }
    }

    /// The name people know.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Vercel => "Vercel",
            Self::Netlify => "Netlify",
            Self::Railway => "Railway",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Whose provider account a deployment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// The owner's own connection.
    User,
    /// The operator's account (`DEPLOY_PLATFORM_ACCOUNTS`).
    Platform,
}

impl Account {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Platform => "platform",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "user" => Some(Self::User),
            "platform" => Some(Self::Platform),
            _ => None,
        }
    }
}

/// The name of a project's home at a provider, from the AutoCrea project's name: lower-case
/// letters, digits and single hyphens, at most 52 characters (Vercel and Netlify names are
/// lower-case and Railway's are short), `autocrea-project` when nothing is left.
pub fn home_name(project_name: &str) -> String {
    let mut name = String::new();
    for c in project_name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
        if name.len() >= 52 {
            break;
        }
    }
    let name = name.trim_matches('-');
    if name.is_empty() {
        "autocrea-project".to_string()
    } else {
        name.to_string()
    }
}

/// The same name made unique with the project id's first characters, for when the plain name is
/// taken at the provider.
pub fn unique_home_name(project_name: &str, project_id: &str) -> String {
    let suffix: String = project_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("{}-{suffix}", home_name(project_name))
}

/// Vercel's framework preset for a project's `framework` label; `None` serves the files as
/// they are.
pub fn vercel_framework(label: &str) -> Option<&'static str> {
    let label: String = label
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    Some(match label.as_str() {
        "nextjs" | "next" => "nextjs",
        "react" | "createreactapp" | "cra" => "create-react-app",
        "vite" | "vitereact" => "vite",
        "vue" | "vuejs" => "vue",
        "nuxt" | "nuxtjs" => "nuxtjs",
        "svelte" | "sveltekit" => "sveltekit",
        "astro" => "astro",
        "angular" => "angular",
        "gatsby" => "gatsby",
        "remix" => "remix",
        "hugo" => "hugo",
        "eleventy" | "11ty" => "eleventy",
        "express" => "express",
        _ => return None,
    })
}

/// Which environment of the provider a deployment goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The live site.
    Production,
    /// A preview (Vercel preview, Netlify draft deploy).
    Preview,
}

impl Target {
    /// Parses the wire name; absent means production.
    pub fn parse(raw: Option<&str>) -> Result<Self, Invalid> {
        match raw.map(|r| r.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("production") => Ok(Self::Production),
            Some("preview") => Ok(Self::Preview),
            Some(other) => Err(Invalid::new(
                "target",
                format!("unknown target {other:?}: use production or preview"),
            )),
        }
    }

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Preview => "preview",
        }
    }
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Recorded; nothing sent yet.
    Queued,
    /// Reading the files and sending them to the provider.
    Uploading,
    /// The provider accepted it and is building; the poller follows it.
    Building,
    /// Live (final).
    Ready,
    /// Failed; the error text says why (final).
    Error,
    /// Canceled on request (final).
    Canceled,
}

impl State {
    /// Every state, in the order a deployment can pass them.
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Uploading,
        Self::Building,
        Self::Ready,
        Self::Error,
        Self::Canceled,
    ];

    /// States the poller works on.
    pub const ACTIVE: [State; 3] = [State::Queued, State::Uploading, State::Building];

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Uploading => "uploading",
            Self::Building => "building",
            Self::Ready => "ready",
            Self::Error => "error",
            Self::Canceled => "canceled",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "queued" => Self::Queued,
            "uploading" => Self::Uploading,
            "building" => Self::Building,
            "ready" => Self::Ready,
            "error" => Self::Error,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    /// Whether no further change can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ready | Self::Error | Self::Canceled)
    }
}

/// A project id as project-service issues them (a UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectId(String);

impl ProjectId {
    /// Parses `raw` (field `projectId`).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Invalid::new("projectId", "is required"));
        }
        uuid::Uuid::parse_str(raw)
            .map(|id| Self(id.to_string()))
            .map_err(|_| Invalid::new("projectId", "is not a project id (a UUID)"))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A deployment id (UUID). An id that does not parse cannot name any deployment, so callers
/// treat it as not found rather than as a malformed request.
pub fn parse_deployment_id(raw: &str) -> Option<String> {
    uuid::Uuid::parse_str(raw.trim())
        .ok()
        .map(|id| id.to_string())
}

/// Most environment variables one request may set.
const MAX_ENV_VARS: usize = 100;
/// Longest variable name.
const MAX_ENV_NAME: usize = 256;
/// Largest variable value (Vercel and Railway allow about 64 KiB).
const MAX_ENV_VALUE: usize = 64 * 1024;

/// Validated environment variables (field `env`), in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVars(BTreeMap<String, String>);

impl EnvVars {
    /// Checks names and sizes.
    pub fn parse(raw: impl IntoIterator<Item = (String, String)>) -> Result<Self, Invalid> {
        let vars: BTreeMap<String, String> = raw.into_iter().collect();
        if vars.len() > MAX_ENV_VARS {
            return Err(Invalid::new(
                "env",
                format!("at most {MAX_ENV_VARS} variables per deployment"),
            ));
        }
        for (name, value) in &vars {
            let valid_name = !name.is_empty()
                && name.len() <= MAX_ENV_NAME
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(Invalid::new(
                    "env",
                    format!(
                        "variable name {name:?} must be letters, digits and _, not start with a \
                         digit, and be at most {MAX_ENV_NAME} characters"
                    ),
                ));
            }
            if value.len() > MAX_ENV_VALUE {
                return Err(Invalid::new(
                    "env",
                    format!("value of {name} is longer than {MAX_ENV_VALUE} bytes"),
                ));
            }
        }
        Ok(Self(vars))
    }

    /// The variables.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As stored in the database until the provider has them.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_string())
    }

    /// From the stored form; garbage reads as no variables.
    pub fn from_json(raw: &str) -> Self {
        Self(serde_json::from_str(raw).unwrap_or_default())
    }
}

/// An idempotency key (field `idempotencyKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Absent or blank means none.
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, Invalid> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        if raw.len() > 255 || !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Invalid::new(
                "idempotencyKey",
                "must be at most 255 printable ASCII characters without spaces",
            ));
        }
        Ok(Some(Self(raw.to_string())))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One page size (field `pageSize`): 0 means 20, at most 100.
pub fn page_size(raw: i32) -> Result<i64, Invalid> {
    match raw {
        0 => Ok(20),
        n if n < 0 => Err(Invalid::new("pageSize", "must not be negative")),
        n => Ok(i64::from(n.min(100))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_checked() {
        assert!(EnvVars::parse([("API_URL".into(), "x".into())]).is_ok());
        for bad in ["", "1X", "A-B", "A B"] {
            let err = EnvVars::parse([(bad.to_string(), "x".into())]).unwrap_err();
            assert_eq!(err.field, "env", "{bad}");
        }
    }

    #[test]
    fn home_names_are_provider_safe() {
        assert_eq!(home_name("My Shop: v2!"), "my-shop-v2");
        assert_eq!(home_name("  ***  "), "autocrea-project");
        assert_eq!(home_name(&"a".repeat(80)).len(), 52);
        assert_eq!(
            unique_home_name("Site", "0193A1B2-c3d4-7000-8000-000000000000"),
            "site-0193a1b2"
        );
        assert_eq!(vercel_framework("Next.js"), Some("nextjs"));
        assert_eq!(vercel_framework("HTML"), None);
    }

    #[test]
    fn targets_and_providers_parse() {
        assert_eq!(Target::parse(None).unwrap(), Target::Production);
        assert_eq!(Target::parse(Some("Preview")).unwrap(), Target::Preview);
        assert_eq!(Target::parse(Some("staging")).unwrap_err().field, "target");
        assert_eq!(Provider::parse("Netlify").unwrap(), Provider::Netlify);
        assert_eq!(Provider::parse("heroku").unwrap_err().field, "provider");
    }
}
