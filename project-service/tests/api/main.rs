//! Integration tests of project-service: the real server on 127.0.0.1:0, the generated tonic
//! client over the socket, and every behaviour on both SQLite and PostgreSQL.

/// Declares, for each named `async fn name(backend: Backend)`, a module `name` holding one test
/// per database (`name::sqlite`, `name::postgres`), so no behaviour is tested on one engine only.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

mod files;
mod helpers;
mod identity;
mod isolation;
mod limits;
mod pagination;
mod projects;
mod user_caps;
