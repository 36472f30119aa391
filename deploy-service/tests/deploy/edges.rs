//! Provider edge cases: Netlify drafts and cancels, Railway rollback, sleeping and waiting
//! states, Vercel `BLOCKED`, and the overall deadline of a deployment.

use std::time::Duration;

use crate::helpers::{ALICE, Backend, TestApp, request, states};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netlify_preview_reports_the_drafts_url_not_the_live_sites() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    let live = app.deploy(ALICE, &project, "netlify").await;
    let live = app.finish(ALICE, &live.id).await;
    let mut req = request(&project, "netlify");
    req.target = Some("preview".to_string());
    let preview = app.create(ALICE, req).await.unwrap();
    let preview = app.finish(ALICE, &preview.id).await;
    assert_eq!(preview.state, "ready");
    assert!(
        preview
            .url
            .starts_with(&format!("https://{}--", preview.provider_deployment_id)),
        "{preview:?}"
    );
    assert_ne!(preview.url, live.url, "the draft is not the live site");
    let state = app.netlify.state.lock().unwrap();
    assert!(state.deploys[&preview.provider_deployment_id].draft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlify_cancellation_is_read_from_the_deploys_state() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.netlify.hold(true);
    let project = app.site(ALICE).await;
    let set_state = |id: &str, state: &'static str, message: Option<&str>| {
        let mut fake = app.netlify.state.lock().unwrap();
        let deploy = fake.deploys.get_mut(id).unwrap();
        deploy.state = state;
        deploy.error_message = message.map(str::to_string);
    };
    // Canceled at Netlify (say, from its dashboard): canceled here.
    let first = app.deploy(ALICE, &project, "netlify").await;
    let building = app.wait_for_state(ALICE, &first.id, "building").await;
    set_state(&building.provider_deployment_id, "canceled", None);
    let done = app.finish(ALICE, &first.id).await;
    assert_eq!(done.state, "canceled", "{done:?}");
    // An error is an error, whatever its message says.
    let second = app.deploy(ALICE, &project, "netlify").await;
    let building = app.wait_for_state(ALICE, &second.id, "building").await;
    set_state(
        &building.provider_deployment_id,
        "error",
        Some("Canceled build"),
    );
    let done = app.finish(ALICE, &second.id).await;
    assert_eq!(done.state, "error", "{done:?}");
    assert!(done.error.contains("Canceled build"), "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn railway_rollback_checks_can_rollback_first() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let project = app.site(ALICE).await;
    let first = app.deploy(ALICE, &project, "railway").await;
    let first = app.finish(ALICE, &first.id).await;
    let second = app.deploy(ALICE, &project, "railway").await;
    let second = app.finish(ALICE, &second.id).await;
    app.railway
        .state
        .lock()
        .unwrap()
        .deployments
        .get_mut(&first.provider_deployment_id)
        .unwrap()
        .can_rollback = false;
    let rollback = app.rollback(ALICE, &second.id).await.unwrap();
    let rollback = app.finish(ALICE, &rollback.id).await;
    assert_eq!(rollback.state, "error", "{rollback:?}");
    assert!(
        rollback.error.contains("canRollback is false"),
        "{rollback:?}"
    );
    assert!(app.railway.operations("deploymentRollback").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn railway_sleeping_is_ready_and_says_so() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.railway.hold(true);
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "railway").await;
    let building = app.wait_for_state(ALICE, &created.id, "building").await;
    app.railway
        .state
        .lock()
        .unwrap()
        .deployments
        .get_mut(&building.provider_deployment_id)
        .unwrap()
        .status = "SLEEPING";
    let events = app.watch(ALICE, &created.id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.state, "ready", "{events:#?}");
    assert!(last.message.contains("SLEEPING"), "{last:?}");
    assert!(last.url.starts_with("https://site-"), "{last:?}");
    let done = app.get(ALICE, &created.id).await.unwrap();
    assert_eq!(done.provider_state, "SLEEPING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_states_are_shown_as_such_until_they_move() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.railway.hold(true);
    app.vercel.hold(true);
    let project = app.site(ALICE).await;
    for (provider, raw, said) in [
        ("railway", "NEEDS_APPROVAL", "approve"),
        ("railway", "WAITING", "waiting at Railway"),
        ("vercel", "BLOCKED", "Vercel blocked the deployment"),
    ] {
        let created = app.deploy(ALICE, &project, provider).await;
        let building = app.wait_for_state(ALICE, &created.id, "building").await;
        let id = building.provider_deployment_id.clone();
        let set = |status: &'static str| match provider {
            "railway" => {
                app.railway
                    .state
                    .lock()
                    .unwrap()
                    .deployments
                    .get_mut(&id)
                    .unwrap()
                    .status = status
            }
            _ => {
                app.vercel
                    .state
                    .lock()
                    .unwrap()
                    .deployments
                    .get_mut(&id)
                    .unwrap()
                    .state = status
            }
        };
        set(raw);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let shown = loop {
            let now = app.get(ALICE, &created.id).await.unwrap();
            if now.provider_state == raw {
                break now;
            }
            assert!(tokio::time::Instant::now() < deadline, "{now:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(shown.state, "building", "not failed, not final: {shown:?}");
        set(if provider == "railway" {
            "SUCCESS"
        } else {
            "READY"
        });
        let events = app.watch(ALICE, &created.id).await.unwrap();
        let waiting = events
            .iter()
            .find(|e| e.message.contains(raw))
            .unwrap_or_else(|| panic!("no event for {raw}: {events:#?}"));
        assert!(waiting.message.contains(said), "{waiting:?}");
        assert_eq!(events.last().unwrap().state, "ready");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_ends_at_its_deadline_and_its_stream_closes() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.poller.max_build = Duration::from_secs(2);
    })
    .await;
    app.vercel.hold(true);
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    let started = std::time::Instant::now();
    let events = app.watch(ALICE, &created.id).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        states(&events),
        ["queued", "uploading", "building", "error"]
    );
    let done = app.get(ALICE, &created.id).await.unwrap();
    assert!(done.error.contains("timed out at the provider"), "{done:?}");
    assert!(done.error.contains("DEPLOY_MAX_BUILD_SECS"), "{done:?}");
    // The provider is asked to stop the build it was still running (just after the final event).
    let cancel = format!("/v12/deployments/{}/cancel", done.provider_deployment_id);
    let asked = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.vercel.count("PATCH", &cancel) == 0 && tokio::time::Instant::now() < asked {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.vercel.count("PATCH", &cancel), 1);
    // No more polling of it.
    let reads = app.vercel.count("GET", "/v13/deployments/");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.vercel.count("GET", "/v13/deployments/"), reads);
}
