//! Helpers for integration tests that use the real PostgreSQL and Redis servers.
//!
//! The test command (`bash deploy/test.sh`) starts both and exports `TEST_DATABASE_URL` and
//! `TEST_REDIS_URL`. A test that needs them fails loudly when they are missing: it never skips.

use sqlx::AnyConnection;
use sqlx::Connection;
use sqlx::any::install_default_drivers;

/// `message` sent as `user` (the `x-user-id` metadata the gateway sets), for calling a
/// service's gRPC server directly.
pub fn as_user<T>(user: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        crate::grpc::USER_ID,
        user.parse().expect("an ASCII user id"),
    );
    request
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

/// Creates a new, empty PostgreSQL database on the test server and returns its URL.
pub async fn fresh_postgres_url() -> String {
    install_default_drivers();
    let admin = required_env("TEST_DATABASE_URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    with_database(&admin, &name)
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
