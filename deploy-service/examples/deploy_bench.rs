//! deploy-service benchmark (issue 5): the real project-service and deploy-service in-process on
//! loopback with the test suite's fake providers answering at once.
//!
//! 1. Latency: time from CreateDeployment to the final event on WatchDeployment for a project of
//!    100 files / 1 MB (Vercel and Netlify; every file new, so every file is uploaded).
//! 2. Capacity: N deployments kept in progress at the provider (Railway fake on hold) while one
//!    deploy-service follows them; reports the status reads achieved against what the poll
//!    schedule asks for, then how long all N take to reach `ready` once the provider lets them.
//!
//! Run: `cargo run --release -p deploy-service --example deploy_bench -- [deployments] [runs]`
//! (defaults 1000 and 10). Set `BENCH_DATABASE_URL=postgres://…` to use PostgreSQL.

use fake_providers::netlify as fake_netlify;
use fake_providers::railway as fake_railway;
use fake_providers::vercel as fake_vercel;

use std::time::{Duration, Instant};

use autocrea_proto::deploy::v1 as pb;
use autocrea_proto::deploy::v1::deploy_service_client::DeployServiceClient;
use autocrea_proto::project::v1 as project_pb;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use rand::RngCore;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, channel};
use service_runtime::testing::{TempDir, fresh_sqlite_url};
use tokio_stream::StreamExt;
use tonic::Request;
use tonic::transport::Channel;

const USER: &str = "bench_user";
/// Longest interval between two status reads of one deployment in the capacity run.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long the capacity run measures status reads in steady state.
const WINDOW: Duration = Duration::from_secs(20);

fn as_user<T>(message: T) -> Request<T> {
    service_runtime::testing::as_user(USER, message)
}

/// A create call as the gateway makes it: with a grant to read `project`'s files.
fn deploying<T>(project: &str, message: T) -> Request<T> {
    service_runtime::testing::as_user_deploying(USER, project, message)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let deployments: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let runs: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(10);

    let (project_db, _project_dir) = fresh_sqlite_url();
    let deploy_dir = TempDir::new();
    let database_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| service_runtime::db::sqlite_url(&deploy_dir.path, "deploy.db"));
    let backend = database_url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let project_url = format!("http://{}", listener.local_addr()?);
    let mut project_config = project_service::Config::with_database_url(project_db);
    project_config.caller_keys = Some(service_runtime::testing::caller_keys());
    tokio::spawn(project_service::run(
        project_config,
        listener,
        std::future::pending(),
    ));
    let vercel = fake_vercel::start();
    let netlify = fake_netlify::start();
    let railway = fake_railway::start();

    let mut config = deploy_service::Config::with_database_url(database_url);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    config.project_service_url = project_url.clone();
    config.vercel.api_url = vercel.url();
    config.netlify.api_url = netlify.api_url();
    config.railway.api_url = railway.api_url();
    config.poller.min_interval = Duration::from_millis(100);
    config.poller.max_interval = MAX_POLL_INTERVAL;
    config.poller.tick = Duration::from_millis(50);
    config.db_max_connections = 20;
    println!(
        "deploy-service on {backend}; poll interval {:?} growing ×1.5 to {:?}",
        config.poller.min_interval, config.poller.max_interval
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let deploy_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(deploy_service::run(
        config,
        listener,
        std::future::pending(),
    ));

    let projects = ProjectServiceClient::new(channel(&project_url, ClientOptions::default())?)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .max_decoding_message_size(MAX_MESSAGE_SIZE);
    let deploy = DeployServiceClient::new(channel(&deploy_url, ClientOptions::default())?);
    // The bench user's own accounts at each fake provider.
    for (provider, token) in [
        ("vercel", fake_vercel::TOKEN),
        ("netlify", fake_netlify::TOKEN),
        ("railway", fake_railway::TOKEN),
    ] {
        deploy
            .clone()
            .put_connection(as_user(pb::PutConnectionRequest {
                provider: provider.to_string(),
                token: token.to_string(),
                project_id: (provider == "railway").then(|| fake_railway::PROJECT.to_string()),
                ..Default::default()
            }))
            .await?;
    }

    for provider in ["vercel", "netlify"] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let project = project_of_random_files(&projects, 100, 10 * 1024).await?;
            times.push(create_to_ready(&deploy, &project, provider).await?);
        }
        times.sort();
        println!(
            "{provider}: 100 files / 1 MB, create → ready on the events stream over {runs} runs: \
             median {:?}, p90 {:?}, min {:?}, max {:?}",
            times[times.len() / 2],
            times[(times.len() * 9 / 10).min(times.len() - 1)],
            times[0],
            times[times.len() - 1]
        );
    }

    capacity(&deploy, &projects, &railway, deployments).await?;
    Ok(())
}

async fn project_of_random_files(
    projects: &ProjectServiceClient<Channel>,
    files: usize,
    size: usize,
) -> anyhow::Result<String> {
    let project = projects
        .clone()
        .create_project(as_user(project_pb::CreateProjectRequest {
            name: "bench".to_string(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    for i in 0..files {
        let mut content = vec![0u8; size];
        rand::rng().fill_bytes(&mut content);
        projects
            .clone()
            .put_file(as_user(project_pb::PutFileRequest {
                project_id: project.id.clone(),
                path: format!("assets/file-{i:03}.bin"),
                content,
            }))
            .await?;
    }
    Ok(project.id)
}

async fn create_to_ready(
    deploy: &DeployServiceClient<Channel>,
    project: &str,
    provider: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let created = deploy
        .clone()
        .create_deployment(deploying(
            project,
            pb::CreateDeploymentRequest {
                project_id: project.to_string(),
                provider: provider.to_string(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let mut stream = deploy
        .clone()
        .watch_deployment(as_user(pb::WatchDeploymentRequest { id: created.id }))
        .await?
        .into_inner();
    while let Some(event) = stream.next().await {
        let event = event?;
        if event.r#final {
            anyhow::ensure!(
                event.state == "ready",
                "ended {}: {}",
                event.state,
                event.message
            );
            return Ok(started.elapsed());
        }
    }
    anyhow::bail!("stream ended without a final event")
}

async fn capacity(
    deploy: &DeployServiceClient<Channel>,
    projects: &ProjectServiceClient<Channel>,
    railway: &fake_railway::FakeRailway,
    n: usize,
) -> anyhow::Result<()> {
    let project = project_of_random_files(projects, 1, 16).await?;
    railway.hold(true);
    let started = Instant::now();
    let mut creating = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut client = deploy.clone();
        let project = project.clone();
        creating.spawn(async move {
            client
                .create_deployment(deploying(
                    &project,
                    pb::CreateDeploymentRequest {
                        project_id: project.clone(),
                        provider: "railway".to_string(),
                        ..Default::default()
                    },
                ))
                .await
        });
        // Bounded concurrency of the creating clients.
        if creating.len() >= 64 {
            creating.join_next().await.transpose()?.transpose()?;
        }
    }
    while let Some(result) = creating.join_next().await {
        result??;
    }
    println!(
        "capacity: {n} deployments created in {:?}",
        started.elapsed()
    );

    // Wait until every deployment is building at the provider, then until the poll interval
    // has grown to its maximum for all of them.
    while railway.state.lock().unwrap().deployments.len() < n {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "capacity: all {n} sent to the provider after {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(10)).await;

    let reads = || railway.count("POST", "/graphql/v2");
    let before = reads();
    tokio::time::sleep(WINDOW).await;
    let achieved = reads() - before;
    let expected = n as f64 * WINDOW.as_secs_f64() / MAX_POLL_INTERVAL.as_secs_f64();
    println!(
        "capacity: {achieved} status reads in {WINDOW:?} for {n} deployments at a {:?} interval \
         (schedule asks for {expected:.0}): {:.1} %",
        MAX_POLL_INTERVAL,
        achieved as f64 * 100.0 / expected
    );

    railway.hold(false);
    let released = Instant::now();
    loop {
        let ready = count_ready(deploy).await?;
        if ready >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "capacity: all {n} ready {:?} after the provider finished them",
        released.elapsed()
    );
    Ok(())
}

async fn count_ready(deploy: &DeployServiceClient<Channel>) -> anyhow::Result<usize> {
    let mut ready = 0;
    let mut token = String::new();
    loop {
        let page = deploy
            .clone()
            .list_deployments(as_user(pb::ListDeploymentsRequest {
                project_id: None,
                page_size: 100,
                page_token: token,
            }))
            .await?
            .into_inner();
        ready += page
            .deployments
            .iter()
            .filter(|d| d.provider == "railway" && d.state == "ready")
            .count();
        if page.next_page_token.is_empty() {
            return Ok(ready);
        }
        token = page.next_page_token;
    }
}
