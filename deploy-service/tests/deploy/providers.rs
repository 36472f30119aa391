//! One deploy per provider, from the project's files to `ready` with the URL.

use std::collections::HashMap;

use crate::fake::sha1_hex;
use crate::helpers::{ALICE, Backend, TestApp, request, states};
use crate::{fake_netlify, fake_railway, fake_vercel, on_both_databases};

on_both_databases!(
    vercel_deploy_reaches_ready,
    netlify_second_deploy_uploads_only_changes,
    railway_deploy_reaches_ready
);

async fn vercel_deploy_reaches_ready(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.site(ALICE).await;
    let mut req = request(&project, "vercel");
    req.env = HashMap::from([("API_URL".to_string(), "https://api.example.com".to_string())]);
    let created = app.create(ALICE, req).await.expect("create");
    assert_eq!(created.state, "queued");
    assert_eq!(created.provider, "vercel");
    assert_eq!(created.target, "production");

    let events = app.watch(ALICE, &created.id).await.expect("watch");
    assert_eq!(
        states(&events),
        ["queued", "uploading", "building", "ready"],
        "{events:#?}"
    );
    assert!(events.last().unwrap().r#final);
    let done = app.get(ALICE, &created.id).await.unwrap();
    assert_eq!(done.state, "ready");
    assert!(done.url.starts_with("https://site-"), "{done:?}");
    assert!(done.url.ends_with(".vercel.app"), "{done:?}");
    assert!(done.provider_deployment_id.starts_with("dpl_"));
    assert!(done.finished_at_ms >= done.created_at_ms);
    assert_eq!(events.last().unwrap().url, done.url);

    // Three distinct contents among four files: three uploads, each by digest.
    let uploads: Vec<_> = app
        .vercel
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/files")
        .collect();
    assert_eq!(uploads.len(), 3, "{uploads:#?}");
    for upload in &uploads {
        assert_eq!(upload.headers["x-vercel-digest"], sha1_hex(&upload.body));
        assert_eq!(upload.headers["content-type"], "application/octet-stream");
    }
    for r in app.vercel.requests() {
        assert_eq!(
            r.headers["authorization"],
            format!("Bearer {}", fake_vercel::TOKEN)
        );
    }
    let state = app.vercel.state.lock().unwrap();
    let deployment = &state.deployments[&done.provider_deployment_id];
    assert_eq!(deployment.files.len(), 4);
    assert_eq!(deployment.target.as_deref(), Some("production"));
    let env = state.env.values().next().expect("env set on the project");
    assert_eq!(env[0]["key"], "API_URL");
    assert_eq!(env[0]["type"], "encrypted");
}

async fn netlify_second_deploy_uploads_only_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.site(ALICE).await;
    let first = app.deploy(ALICE, &project, "netlify").await;
    let first = app.finish(ALICE, &first.id).await;
    assert_eq!(first.state, "ready", "{first:?}");
    assert!(first.url.starts_with("https://site-"), "{first:?}");
    assert_eq!(app.netlify.count("PUT", "/api/v1/deploys/"), 3);
    assert_eq!(
        app.netlify.count("POST", "/api/v1/sites"),
        2,
        "one site, one deploy"
    );

    app.put_file(ALICE, &project, "about.html", b"<h1>about us</h1>")
        .await;
    let second = app.deploy(ALICE, &project, "netlify").await;
    let second = app.finish(ALICE, &second.id).await;
    assert_eq!(second.state, "ready", "{second:?}");
    let puts: Vec<_> = app
        .netlify
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(
        puts.len(),
        4,
        "only the changed file uploaded the second time"
    );
    assert_eq!(
        puts[3].path,
        format!(
            "/api/v1/deploys/{}/files/about.html",
            second.provider_deployment_id
        )
    );
    assert_eq!(&puts[3].body[..], b"<h1>about us</h1>");
    // The site is created once and reused.
    let site_creations = app
        .netlify
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/sites")
        .count();
    assert_eq!(site_creations, 1);
    let deploy_request = app
        .netlify
        .requests()
        .into_iter()
        .rfind(|r| r.method == "POST" && r.path.ends_with("/deploys"))
        .unwrap();
    let files = deploy_request.json()["files"].clone();
    assert_eq!(files["/about.html"], sha1_hex(b"<h1>about us</h1>"));
    assert_eq!(files["/copy of index.html"], sha1_hex(b"<h1>hello</h1>"));
    assert!(
        app.netlify
            .requests()
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {}", fake_netlify::TOKEN))
    );
}

async fn railway_deploy_reaches_ready(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let project = app.site(ALICE).await;
    let mut req = request(&project, "railway");
    req.env = HashMap::from([("PORT".to_string(), "8080".to_string())]);
    let created = app.create(ALICE, req).await.expect("create");
    let events = app.watch(ALICE, &created.id).await.unwrap();
    assert_eq!(
        states(&events),
        ["queued", "uploading", "building", "ready"],
        "{events:#?}"
    );
    // Provider states are logged as they change.
    assert!(
        events.iter().any(|e| e.message.contains("DEPLOYING")),
        "{events:#?}"
    );
    let done = app.get(ALICE, &created.id).await.unwrap();
    assert!(done.url.starts_with("https://site-"), "{done:?}");
    assert!(done.url.ends_with("-production.up.railway.app"), "{done:?}");

    let state = app.railway.state.lock().unwrap();
    let services = state.services_of(fake_railway::PROJECT);
    assert_eq!(services.len(), 1, "one service for the project");
    assert_eq!(services[0].variables["PORT"], "8080");
    let requests = app.railway.requests();
    let upsert = requests
        .iter()
        .find(|r| {
            r.json()["query"]
                .as_str()
                .is_some_and(|q| q.contains("variableCollectionUpsert"))
        })
        .unwrap();
    assert_eq!(upsert.json()["variables"]["input"]["skipDeploys"], true);
    assert_eq!(
        upsert.json()["variables"]["input"]["serviceId"],
        services[0].id
    );
    for r in &requests {
        assert_eq!(
            r.headers["authorization"],
            format!("Bearer {}", fake_railway::TOKEN)
        );
        assert!(
            !r.headers.contains_key("project-access-token"),
            "never both token headers"
        );
    }
}
