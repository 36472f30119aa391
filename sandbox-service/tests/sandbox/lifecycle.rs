//! Start-up and shutdown: the warm pool, orphans of a crashed instance, no Docker engine.

use std::collections::HashMap;
use std::time::Duration;

use autocrea_proto::sandbox::v1::ListLanguagesRequest;
use bollard::models::ContainerCreateBody;
use sandbox_service::config::DEFAULT_IMAGE;
use sandbox_service::engine::{LABEL, OWNER_LABEL};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    authed, code, docker, ensure_docker_and_image, owned_containers, spawn_app, test_config,
    wait_for_containers,
};

const SERVICE: &str = "autocrea.sandbox.v1.SandboxService";

#[tokio::test]
async fn warm_containers_serve_one_run_each_and_are_refilled() {
    let mut config = test_config("pool");
    config.pool_sizes = vec![("python".into(), 2)];
    let app = spawn_app(config).await;
    let warm = wait_for_containers(&app.instance, 2).await;
    let result = app.execute(code("python", "print('warm')")).await;
    assert_eq!(result.stdout, "warm\n");
    // The container that ran is destroyed and replaced: one of the first two is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = owned_containers(&app.instance).await;
        let kept = warm.iter().filter(|id| now.contains(id)).count();
        if now.len() == 2 && kept == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pool not refilled: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_dead_warm_container_is_replaced_by_a_fresh_one() {
    let mut config = test_config("dead-pool");
    config.pool_sizes = vec![("bash".into(), 1)];
    let app = spawn_app(config).await;
    let warm = wait_for_containers(&app.instance, 1).await;
    docker()
        .kill_container(
            &warm[0],
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let result = app.execute(code("bash", "echo still fine")).await;
    assert_eq!(result.stdout, "still fine\n");
    app.stop().await;
}

#[tokio::test]
async fn orphans_of_a_previous_run_are_swept_at_start() {
    let config = test_config("orphans");
    ensure_docker_and_image().await;
    let orphan = docker()
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(DEFAULT_IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "infinity".into()]),
                labels: Some(HashMap::from([
                    (LABEL.to_string(), "run".to_string()),
                    (OWNER_LABEL.to_string(), config.instance.clone()),
                ])),
                ..Default::default()
            },
        )
        .await
        .expect("create an orphan container")
        .id;
    let instance = config.instance.clone();
    assert_eq!(owned_containers(&instance).await, vec![orphan]);
    let app = spawn_app(config).await;
    // The first engine check (and its sweep) completes before the server answers.
    app.client
        .clone()
        .list_languages(authed(ListLanguagesRequest {}))
        .await
        .unwrap();
    assert!(owned_containers(&instance).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn without_docker_the_service_starts_and_reports_unavailable() {
    let mut config = test_config("no-docker");
    config.docker_host = Some("unix:///nonexistent/docker.sock".into());
    let app = spawn_app(config).await;
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::NotServing);
    let status = app
        .client
        .clone()
        .execute(authed(code("python", "print(1)")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("Docker engine"),
        "reason given: {status:?}"
    );
    // Validation still answers first.
    let status = app
        .client
        .clone()
        .execute(authed(code("cobol", "x")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    app.stop().await;
}

#[tokio::test]
async fn with_docker_health_is_serving() {
    let app = spawn_app(test_config("health")).await;
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    app.stop().await;
}
