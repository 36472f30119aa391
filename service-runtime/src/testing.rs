//! Helpers for integration tests that use the real PostgreSQL and Redis servers.
//!
//! The test command (`bash deploy/test.sh`) starts both and exports `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL`, and for the TLS tests `TEST_DATABASE_TLS_URL`, `TEST_REDIS_TLS_URL`,
//! `TEST_TLS_CA_FILE` and `TEST_TLS_WRONG_CA_FILE`. A test that needs them fails loudly when they
//! are missing: it never skips.

use std::sync::OnceLock;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::AnyConnection;
use sqlx::Connection;
use sqlx::any::install_default_drivers;

use crate::identity::{
    ASSERTION, ASSERTION_LIFETIME, AssertionSigner, GRANT, OnBehalfOf, SigningKey, VerifyingKeys,
    attach, audience,
};

/// The key pair of the suites' stand-in gateway, made once per test process: services started by
/// a suite verify with [`caller_keys`], and [`as_user`] signs with it.
pub fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

/// The public key services started by a suite verify assertions with (`IDENTITY_PUBLIC_KEY`).
pub fn caller_keys() -> VerifyingKeys {
    VerifyingKeys::from(signing_key().verifying_key().clone())
}

/// A signer with the suites' key, for a gateway started by a suite (`IDENTITY_SIGNING_KEY`).
pub fn signer() -> AssertionSigner {
    AssertionSigner::new(signing_key())
}

/// An assertion for `user` addressed to `audiences`, valid for `lifetime`, signed with `key`.
pub fn assertion(
    key: &SigningKey,
    user: &str,
    audiences: &[&str],
    lifetime: Duration,
) -> SecretString {
    let token = AssertionSigner::new(key)
        .mint(&session_user(user), audiences, lifetime)
        .expect("sign a test assertion");
    SecretString::from(token)
}

/// `message` sent as `user`, as the gateway sends it: with an assertion addressed to every
/// service, signed with the suites' key. For calling a service's gRPC server directly.
pub fn as_user<T>(user: &str, message: T) -> tonic::Request<T> {
    with_assertion(
        message,
        &assertion(signing_key(), user, &audience::ALL, ASSERTION_LIFETIME),
    )
}

/// `message` sent as `user` the way the gateway creates a deployment of `project`: [`as_user`]
/// plus a grant to read that project's files, for deploy-service's later upload.
pub fn as_user_deploying<T>(user: &str, project: &str, message: T) -> tonic::Request<T> {
    let mut request = as_user(user, message);
    attach(&mut request, GRANT, &files_grant(user, project));
    request
}

/// A grant for `user` to read `project`'s files for an hour, signed with the suites' key, as the
/// gateway mints one with a deployment.
pub fn files_grant(user: &str, project: &str) -> SecretString {
    let claims = session_user(user).claims(
        &[audience::PROJECT],
        Duration::from_secs(3600),
        Some(project.to_string()),
    );
    SecretString::from(signer().sign(&claims).expect("sign a test grant"))
}

/// `user`, signed in with a session token.
fn session_user(user: &str) -> OnBehalfOf {
    OnBehalfOf {
        user_id: user.to_string(),
        auth_method: "jwt".to_string(),
        ..OnBehalfOf::default()
    }
}

/// `message` carrying `assertion` as the caller assertion.
pub fn with_assertion<T>(message: T, assertion: &SecretString) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    attach(&mut request, ASSERTION, assertion);
    request
}

/// Requests a service named `service` must refuse UNAUTHENTICATED, each with what is wrong with
/// it: a forged `x-user-id` and no assertion, an expired assertion, one signed by another key,
/// and one addressed to another service. Every one claims to be `user`.
pub fn forged_requests<T: Clone>(
    service: &'static str,
    user: &str,
    message: T,
) -> Vec<(&'static str, tonic::Request<T>)> {
    let mut forged = tonic::Request::new(message.clone());
    forged
        .metadata_mut()
        .insert("x-user-id", user.parse().expect("an ASCII user id"));
    let mut expired_claims = session_user(user).claims(&[service], ASSERTION_LIFETIME, None);
    expired_claims.iat -= 600;
    expired_claims.exp = expired_claims.iat + 60;
    let expired = SecretString::from(signer().sign(&expired_claims).expect("sign"));
    let other_key = SigningKey::generate();
    let foreign = assertion(&other_key, user, &[service], ASSERTION_LIFETIME);
    let elsewhere: Vec<&str> = audience::ALL
        .into_iter()
        .filter(|a| *a != service)
        .collect();
    let misaddressed = assertion(signing_key(), user, &elsewhere, ASSERTION_LIFETIME);
    vec![
        ("a forged x-user-id and no assertion", forged),
        (
            "an expired assertion",
            with_assertion(message.clone(), &expired),
        ),
        (
            "an assertion signed by another key",
            with_assertion(message.clone(), &foreign),
        ),
        (
            "an assertion minted for other services",
            with_assertion(message, &misaddressed),
        ),
    ]
}

/// Asserts that the service at `url` (`http://host:port`) answers its health check SERVING to a
/// call without any assertion: readiness needs no identity.
pub async fn assert_health_open(url: &str) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel =
        crate::grpc::channel(url, crate::grpc::ClientOptions::default()).expect("channel");
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the health check answers without an assertion")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
}

/// Asserts `result` failed with `code`, returning the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
) -> tonic::Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got success: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// Asserts `result` failed with INVALID_ARGUMENT carrying one field violation of `field`.
#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    field: &str,
) -> tonic::Status {
    use tonic_types::StatusExt;
    let status = expect_code(result, tonic::Code::InvalidArgument);
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
    assert_eq!(bad.field_violations[0].field, field, "{bad:?}");
    assert!(!bad.field_violations[0].description.is_empty());
    status
}

/// The value of a variable the suite needs, or a panic that says how to get it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set. Run the suite with `bash deploy/test.sh`, which starts \
             PostgreSQL and Redis and sets it."
        )
    })
}

/// The Redis server for tests.
pub fn redis_url() -> String {
    required_env("TEST_REDIS_URL")
}

/// The TLS-only Redis for tests (`rediss://`, certificate signed by [`tls_ca_file`]).
pub fn redis_tls_url() -> String {
    required_env("TEST_REDIS_TLS_URL")
}

/// The PEM file of the throwaway CA that signed the test servers' certificates.
pub fn tls_ca_file() -> String {
    required_env("TEST_TLS_CA_FILE")
}

/// The PEM file of a CA that signed nothing the tests talk to.
pub fn wrong_tls_ca_file() -> String {
    required_env("TEST_TLS_WRONG_CA_FILE")
}

/// Creates a new, empty PostgreSQL database owned by the test role that may connect over TLS
/// only, and returns its URL: `sslmode=verify-full` with `sslrootcert=` the test CA.
pub async fn fresh_postgres_tls_url() -> String {
    let tls = required_env("TEST_DATABASE_TLS_URL");
    let role = tls
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(user, _)| user.to_string())
        .expect("TEST_DATABASE_TLS_URL names its role");
    let name = create_database(&format!("OWNER {role}")).await;
    with_database(&tls, &name)
}

/// `url` with its `sslrootcert=` parameter pointing at `ca_file` instead.
pub fn with_root_cert(url: &str, ca_file: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslrootcert="))
        .map(str::to_string)
        .collect();
    params.push(format!("sslrootcert={ca_file}"));
    format!("{base}?{}", params.join("&"))
}

/// Creates a new, empty PostgreSQL database on the test server and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let name = create_database("").await;
    with_database(&required_env("TEST_DATABASE_URL"), &name)
}

/// Creates a database named `t_<uuid>` with `options` (e.g. its owner) and returns its name.
async fn create_database(options: &str) -> String {
    install_default_drivers();
    let admin = required_env("TEST_DATABASE_URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} {options}"
    )))
    .execute(&mut conn)
    .await
    .expect("create test database");
    conn.close().await.ok();
    name
}

/// A fresh SQLite database file in a new temporary directory; the directory lives as long as
/// the returned guard.
pub fn fresh_sqlite_url() -> (String, TempDir) {
    let dir = TempDir::new();
    let url = crate::db::sqlite_url(&dir.path, "test.db");
    (url, dir)
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir {
    /// Its path.
    pub path: std::path::PathBuf,
}

impl TempDir {
    /// Creates a new, empty directory under the system's temporary directory.
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("autocrea-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temporary directory");
        Self { path }
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_root_certificate() {
        assert_eq!(
            super::with_root_cert(
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=/a.pem",
                "/b.pem"
            ),
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/b.pem"
        );
        assert_eq!(
            super::with_root_cert("postgres://u@h/db", "/b.pem"),
            "postgres://u@h/db?sslrootcert=/b.pem"
        );
    }

    #[test]
    fn replaces_database_name() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "t_1"),
            "postgres://u:p@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            with_database("postgres://u@h:1/db?sslmode=disable", "t_2"),
            "postgres://u@h:1/t_2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:1", "t_3"),
            "postgres://u@h:1/t_3"
        );
    }
}
