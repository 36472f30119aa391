//! project-service killed, and its PostgreSQL crashed and restarted, under load.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_under_load_gives_fast_503s_and_loses_nothing_acknowledged() {
    let mut stack = Stack::start(Db::Sqlite).await;
    let gw = &stack.gateway;
    let user = unique_user("fault_kill");
    let project = gw.create_project(&user, "under-load").await;
    let id = project["id"].as_str().unwrap().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(gw, &user, &id, 3, 2, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Kill project-service with calls in flight: its runtime is dropped, every connection cut.
    tokio::task::block_in_place(|| stack.project.server.stop());
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, detail, took) = ready_detail(&stack.gateway).await;
    assert_eq!(status, 503);
    assert!(detail.contains("project-service"), "{detail}");
    assert!(took < Duration::from_secs(2), "/ready took {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outage = killed.elapsed();

    stack.project.restart().await;
    let recovered = wait_for_recovery(&stack.gateway, &user, &id, Duration::from_secs(15)).await;
    let (status, detail, _) = ready_detail(&stack.gateway).await;
    assert!(!detail.contains("project-service"), "{status}: {detail}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = collect(load).await;

    let gw = &stack.gateway;
    for o in &outcomes {
        let status = o.status.unwrap_or_else(|| {
            panic!(
                "{} got no answer within {CLIENT_DEADLINE:?}: {}",
                o.what, o.detail
            )
        });
        assert!(
            matches!(status, 200 | 201 | 503),
            "{} answered {status}: {}",
            o.what,
            o.detail
        );
        if status == 503 {
            assert_eq!(o.content_type, "application/problem+json");
            assert!(o.detail.contains("project-service"), "{}", o.detail);
            // The connect timeout is 500 ms: a dead service is never waited on much longer.
            assert!(
                o.elapsed < Duration::from_secs(3),
                "{} took {:?} to fail",
                o.what,
                o.elapsed
            );
        }
    }
    let refused = outcomes.iter().filter(|o| o.status == Some(503)).count();
    let acknowledged = outcomes.iter().filter(|o| o.acknowledged()).count();
    assert!(
        refused > 0,
        "the outage was not seen: {}",
        summary(&outcomes)
    );
    let (lost, in_doubt) = verify_writes(gw, &user, &id, &outcomes).await;
    eprintln!(
        "service killed for {outage:?} under load: {} requests ({}), {acknowledged} acknowledged, \
         {refused} refused with 503; back {recovered:?} after restart; lost {lost} acknowledged \
         writes; {in_doubt} refused writes were stored anyway",
        outcomes.len(),
        summary(&outcomes)
    );
}

/// project-service on a database of the caller's choosing.
async fn project_service_on(database_url: &str) -> Server {
    let mut config = project_service::Config::with_database_url(database_url.to_string());
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    let server = Server::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        move |listener, shutdown| async move {
            project_service::run(config, listener, async {
                let _ = shutdown.await;
            })
            .await
        },
    );
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(server.addr).await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("project-service did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_write_load_keeps_every_acknowledged_write() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let pg = Arc::new(pg);
    let project = project_service_on(&pg.url()).await;
    let mut config = gateway_config(&format!("http://{}", project.addr));
    config.limits = generous_limits();
    let gw = Gateway::start(config).await;
    let user = unique_user("fault_pg");
    let created = gw.create_project(&user, "pg-restart").await;
    let id = created["id"].as_str().unwrap().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&gw, &user, &id, 4, 1, stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let restarted = Instant::now();
    let server = pg.clone();
    tokio::task::spawn_blocking(move || {
        server.crash();
        std::thread::sleep(Duration::from_millis(1000));
        server.start_again();
    })
    .await
    .unwrap();
    let down_for = restarted.elapsed();
    let recovered = wait_for_recovery(&gw, &user, &id, Duration::from_secs(20)).await;
    // Writes must succeed again too, not only reads.
    let started = Instant::now();
    loop {
        let response = gw
            .put(&format!("/api/projects/{id}/files/after.txt"), &user)
            .json(&json!({"content": "after the restart"}))
            .send()
            .await
            .unwrap();
        if response.status().is_success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "writes did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = collect(load).await;

    let mut failures = Vec::new();
    for o in &outcomes {
        let status = o.status.unwrap_or_else(|| {
            panic!(
                "{} got no answer within {CLIENT_DEADLINE:?}: {}",
                o.what, o.detail
            )
        });
        if !o.acknowledged() {
            // A clear error: problem+json, a server-side status that says to try again.
            assert_eq!(o.content_type, "application/problem+json", "{}", o.what);
            assert_eq!(status, 503, "{}: {}", o.what, o.detail);
            assert!(!o.detail.is_empty());
            failures.push(o.clone());
        }
        assert!(
            o.elapsed < Duration::from_secs(10),
            "{} took {:?}",
            o.what,
            o.elapsed
        );
    }
    let acknowledged = outcomes.iter().filter(|o| o.acknowledged()).count();
    let writes = outcomes.iter().filter(|o| o.write.is_some()).count();
    let (lost, in_doubt) = verify_writes(&gw, &user, &id, &outcomes).await;
    eprintln!(
        "PostgreSQL crashed and restarted ({down_for:?}) under write load: {} requests ({}), \
         {writes} writes, {acknowledged} acknowledged; reads back {recovered:?} after the \
         restart; lost {lost} acknowledged writes; {} failed with clear errors, {in_doubt} of \
         those stored anyway. First failure: {:?}",
        outcomes.len(),
        summary(&outcomes),
        failures.len(),
        failures.first().map(|o| &o.detail)
    );
    drop(gw);
    drop(project);
}
