//! `token`: the subcommand of the `gateway` and `autocrea` binaries that prints an HS256
//! development token, so scripts and people need no JWT code of their own.
//!
//! ```text
//! gateway token [--user ID] [--ttl-secs N]      # secret from AUTH_HS256_SECRET
//! autocrea token [--user ID] [--ttl-secs N]     # … or DATA_DIR/dev-secret, as the quick start made it
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use service_runtime::config::optional;

/// User id of tokens when `--user` is not given (the quick start's user).
pub const DEFAULT_USER: &str = "dev-user";
/// Lifetime of tokens when `--ttl-secs` is not given: one hour.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Runs `token ARGS…` (the arguments after `token`) and returns the token. The secret is
/// `AUTH_HS256_SECRET`, else the file `dev_secret_file` when given (the all-in-one binary passes
/// its `DATA_DIR/dev-secret`).
pub fn command(args: &[String], dev_secret_file: Option<&Path>) -> anyhow::Result<String> {
    const USAGE: &str = "usage: token [--user ID] [--ttl-secs N]";
    let mut user = DEFAULT_USER.to_string();
    let mut ttl = DEFAULT_TTL;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
        match flag.as_str() {
            "--user" => user = value.clone(),
            "--ttl-secs" => {
                ttl = Duration::from_secs(value.parse().with_context(|| {
                    format!("--ttl-secs must be a whole number of seconds; {USAGE}")
                })?)
            }
            other => anyhow::bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    let secret = match (optional("AUTH_HS256_SECRET"), dev_secret_file) {
        (Some(secret), _) => secret,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| {
                format!(
                    "no AUTH_HS256_SECRET and no {} (start the platform once to create it)",
                    file.display()
                )
            })?
            .trim()
            .to_string(),
        (None, None) => anyhow::bail!("set AUTH_HS256_SECRET to the gateway's development secret"),
    };
    crate::auth::issue_dev_token(&secret, &user, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_secret_file_and_flags() {
        let dir = std::env::temp_dir().join(format!("dev-token-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("dev-secret");
        let secret = "0123456789abcdef0123456789abcdef-test";
        std::fs::write(&file, format!("{secret}\n")).unwrap();
        let args = ["--user", "alice", "--ttl-secs", "60"].map(String::from);
        let token = command(&args, Some(&file)).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            60
        );
        assert!(command(&["--user".into()], Some(&file)).is_err());
        assert!(command(&["--colour".into(), "red".into()], Some(&file)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
