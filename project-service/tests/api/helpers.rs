//! `TestApp`: one running project-service on a fresh database, and request helpers.

pub use service_runtime::testing::{as_user, expect_code, expect_invalid};
use std::net::SocketAddr;

use autocrea_proto::project::v1 as pb;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use project_service::Config;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, channel};
use service_runtime::testing::{TempDir, fresh_postgres_url, fresh_sqlite_url};
use tokio::sync::oneshot;
use tonic::Status;
use tonic::transport::Channel;

/// The database engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and a client connected to it. Dropping it stops the server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub database_url: String,
    client: ProjectServiceClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    _sqlite_dir: Option<TempDir>,
}

impl TestApp {
    /// A server with the default configuration on a fresh database.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server whose configuration `adjust` may change, on a fresh database.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let (database_url, sqlite_dir) = match backend {
            Backend::Sqlite => {
                let (url, dir) = fresh_sqlite_url();
                (url, Some(dir))
            }
            Backend::Postgres => (fresh_postgres_url().await, None),
        };
        let mut config = Config::with_database_url(database_url.clone());
        config.db_max_connections = 5;
        config.caller_keys = Some(service_runtime::testing::caller_keys());
        adjust(&mut config);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = project_service::run(config, listener, async {
                let _ = rx.await;
            })
            .await
            {
                panic!("project-service failed: {e:#}");
            }
        });
        let channel =
            channel(&format!("http://{addr}"), ClientOptions::default()).expect("channel");
        let client = ProjectServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self {
            addr,
            database_url,
            client,
            shutdown: Some(tx),
            _sqlite_dir: sqlite_dir,
        }
    }

    /// A client for concurrent use (clones share the connection).
    pub fn client(&self) -> ProjectServiceClient<Channel> {
        self.client.clone()
    }

    /// Creates a project named `name` for `user`.
    pub async fn create_project(&self, user: &str, name: &str) -> pb::Project {
        self.client()
            .create_project(as_user(
                user,
                pb::CreateProjectRequest {
                    name: name.to_string(),
                    description: format!("{name} description"),
                    language: "Rust".to_string(),
                    framework: "actix-web".to_string(),
                },
            ))
            .await
            .expect("create project")
            .into_inner()
    }

    /// The project `id` as `user` sees it.
    pub async fn get_project(&self, user: &str, id: &str) -> Result<pb::Project, Status> {
        self.client()
            .get_project(as_user(user, pb::GetProjectRequest { id: id.to_string() }))
            .await
            .map(|r| r.into_inner())
    }

    /// Writes `content` at `path` in project `id` as `user`.
    pub async fn put_file(
        &self,
        user: &str,
        id: &str,
        path: &str,
        content: impl Into<Vec<u8>>,
    ) -> Result<pb::PutFileResponse, Status> {
        self.client()
            .put_file(as_user(
                user,
                pb::PutFileRequest {
                    project_id: id.to_string(),
                    path: path.to_string(),
                    content: content.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// The files of project `id` as `user` sees them.
    pub async fn list_files(
        &self,
        user: &str,
        id: &str,
        include_content: bool,
    ) -> Result<Vec<pb::File>, Status> {
        self.client()
            .list_files(as_user(
                user,
                pb::ListFilesRequest {
                    project_id: id.to_string(),
                    include_content,
                },
            ))
            .await
            .map(|r| r.into_inner().files)
    }

    /// Counts rows of `table` for `project_id`, straight from the database.
    pub async fn count_rows(&self, table: &str, column: &str, project_id: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.database_url)
            .await
            .expect("connect to test database");
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE {column} = $1"
        )))
        .bind(project_id)
        .fetch_one(&pool)
        .await
        .expect("count rows");
        pool.close().await;
        count
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
