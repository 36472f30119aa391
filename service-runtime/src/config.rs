//! Typed configuration read once from the environment.
//!
//! A missing or malformed value is a [`ConfigError`] naming the variable, so start-up fails with
//! one line that says what to fix.

use std::fmt::Display;
use std::str::FromStr;

/// A configuration variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// A new error for `variable`.
    pub fn new(variable: &str, message: impl Into<String>) -> Self {
        Self {
            variable: variable.to_string(),
            message: message.into(),
        }
    }
}

/// The value of `name`, or `None` when it is unset or blank.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The value of `name` parsed as `T`, or `default` when unset.
pub fn parse_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match optional(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
    }
}

/// The value of `name` parsed as `T`, or `None` when unset.
pub fn parse_optional<T>(name: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    optional(name)
        .map(|raw| {
            raw.parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}")))
        })
        .transpose()
}

/// The value of `name` as a socket address to listen on, `default_port` on all interfaces when unset.
pub fn listen_addr(name: &str, default_port: u16) -> Result<std::net::SocketAddr, ConfigError> {
    parse_or(
        name,
        std::net::SocketAddr::from(([0, 0, 0, 0], default_port)),
    )
}

/// A boolean variable: `1/true/yes/on` or `0/false/no/off`.
pub fn flag(name: &str, default: bool) -> Result<bool, ConfigError> {
    match optional(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(ConfigError::new(
            name,
            format!("expected true or false, got {v:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_the_variable() {
        let err = ConfigError::new("PORT", "cannot parse \"x\"");
        assert_eq!(
            err.to_string(),
            "configuration error: PORT: cannot parse \"x\""
        );
    }
}
