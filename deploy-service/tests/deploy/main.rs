//! deploy-service integration tests: the real deploy-service and project-service in-process on
//! loopback ports, fake Vercel, Netlify and Railway HTTP servers speaking their documented
//! protocols (the `fake-providers` crate), gRPC over the socket, SQLite and PostgreSQL.

use fake_providers::netlify as fake_netlify;
use fake_providers::railway as fake_railway;
use fake_providers::server as fake;
use fake_providers::vercel as fake_vercel;

mod helpers;

mod access;
mod connections;
mod edges;
mod failures;
mod identity;
mod lifecycle;
mod providers;

/// Declares, for each async `fn name(backend)`, a module `name` with one test per database.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::helpers::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use on_both_databases;
