//! Many runs at once: all finish correctly, the queue is bounded, nothing is left behind.

use std::time::Duration;

use autocrea_proto::sandbox::v1::execute_event;
use futures::StreamExt;
use tonic::Code;

use crate::helpers::{authed, code, spawn_app, test_config, wait_for_containers};

#[tokio::test]
async fn twenty_runs_at_once_finish_correctly() {
    // Two warm containers per language.
    let mut config = test_config("twenty");
    config.pool_size = 2;
    let app = spawn_app(config).await;
    let runs = (0..20).map(|i| {
        let app = &app;
        async move {
            let (language, program) = match i % 3 {
                0 => ("python", format!("print({i} * 2)")),
                1 => ("javascript", format!("console.log({i} * 2)")),
                _ => ("bash", format!("echo $(( {i} * 2 ))")),
            };
            (i, app.execute(code(language, &program)).await)
        }
    });
    for (i, result) in futures::future::join_all(runs).await {
        assert_eq!(result.stdout, format!("{}\n", i * 2), "run {i}: {result:?}");
        assert_eq!(result.exit_code, 0);
    }
    // Only the refilled pools remain.
    wait_for_containers(&app.instance, 6).await;
    app.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_resource_exhausted() {
    let mut config = test_config("queue-full");
    config.max_concurrent_runs = 1;
    config.queue_limit = 0;
    let app = spawn_app(config).await;
    // The stream's response arrives once the run is admitted.
    let mut first = app
        .client
        .clone()
        .execute_stream(authed(code("bash", "sleep 2; echo done")))
        .await
        .unwrap()
        .into_inner();
    let status = app
        .client
        .clone()
        .execute(authed(code("python", "print(1)")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("busy"), "{status:?}");
    let mut stdout = String::new();
    while let Some(event) = first.next().await {
        if let Some(execute_event::Event::Result(r)) = event.unwrap().event {
            stdout = r.stdout;
        }
    }
    assert_eq!(stdout, "done\n");
    // Once the first run and its cleanup are over, there is room again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match app
            .client
            .clone()
            .execute(authed(code("python", "print(1)")))
            .await
        {
            Ok(r) => {
                assert_eq!(r.into_inner().stdout, "1\n");
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(tokio::time::Instant::now() < deadline, "queue never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    app.stop().await;
}
