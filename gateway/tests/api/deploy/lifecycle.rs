//! Deployments from creation to ready, cancelled, rolled back, and without credentials.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_to_each_provider_reaches_ready_with_its_url() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;

    for (provider, env, url_prefix) in [
        (
            "vercel",
            json!({"API_URL": "https://api.example"}),
            "https://site-",
        ),
        ("netlify", json!({}), "https://site-"),
        ("railway", json!({"PORT": "8080"}), "https://site-"),
    ] {
        let deployment = stack
            .deploy(
                &user,
                json!({"projectId": project, "provider": provider, "env": env}),
            )
            .await;
        assert_eq!(deployment["state"], "queued", "{deployment:#}");
        assert_eq!(deployment["provider"], provider);
        assert_eq!(deployment["projectId"], project.as_str());
        assert_eq!(deployment["target"], "production");
        assert!(is_rfc3339(&deployment["createdAt"]), "{deployment:#}");
        assert_eq!(deployment["finishedAt"], Value::Null);
        assert!(deployment.get("ownerId").is_none());
        let id = deployment["id"].as_str().unwrap();

        let events = stack.watch_to_end(&user, id).await;
        let seen = states(&events);
        assert_eq!(seen.first().map(String::as_str), Some("queued"), "{seen:?}");
        assert_eq!(seen.last().map(String::as_str), Some("ready"), "{seen:?}");
        assert!(seen.contains(&"building".to_string()), "{seen:?}");
        let sequences: Vec<i64> = events
            .iter()
            .map(|e| e["sequence"].as_i64().unwrap())
            .collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        assert!(events.iter().all(|e| e["deploymentId"] == id));
        assert!(events.iter().all(|e| is_rfc3339(&e["createdAt"])));
        let last = events.last().unwrap();
        let url = last["url"].as_str().unwrap();
        assert!(url.starts_with(url_prefix), "{provider}: {url}");

        let stored = stack.get(&user, id).await;
        assert_eq!(stored["state"], "ready");
        assert_eq!(stored["url"], url);
        assert_eq!(stored["error"], Value::Null);
        assert!(stored["providerDeploymentId"].as_str().is_some());
        assert_eq!(stored["account"], "user");
        assert!(stored["providerState"].as_str().is_some(), "{stored:#}");
        assert!(is_rfc3339(&stored["finishedAt"]), "{stored:#}");
    }

    // Each provider was really used, with the variables passed through: the project's own
    // Vercel project created (named after it), then its variables.
    let env = stack.vercel.matching("POST", "/v10/projects/");
    assert_eq!(env.len(), 1, "{env:?}");
    assert_eq!(env[0].json()[0]["key"], "API_URL");
    let created = stack.vercel.matching("POST", "/v10/projects");
    assert_eq!(created.len(), 2, "creation, then variables");
    assert_eq!(created[0].json()["name"], "site");
    assert_eq!(stack.vercel.matching("POST", "/v13/deployments").len(), 2); // missing_files, then create
    assert_eq!(stack.vercel.matching("POST", "/v2/files").len(), 2);
    assert_eq!(stack.netlify.matching("PUT", "/api/v1/deploys/").len(), 2);
    let variables = stack.railway.operations("variableCollectionUpsert");
    assert_eq!(
        variables[0]["variables"]["input"]["variables"]["PORT"],
        "8080"
    );
    assert_eq!(stack.railway.state.lock().unwrap().uploads.len(), 1);
    // Where the project lives now.
    let targets: Value = stack
        .gateway
        .get(
            &format!("/api/projects/{project}/deployments/targets"),
            &user,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers: Vec<&str> = targets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["netlify", "railway", "vercel"], "{targets:#}");
    assert!(
        targets["items"][2]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://site-")
    );

    // The history lists all three, newest first, one page at a time.
    let page: Value = stack
        .gateway
        .get(
            &format!("/api/deployments?projectId={project}&limit=2"),
            &user,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["railway", "netlify"]);
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let page: Value = stack
        .gateway
        .get(
            &format!("/api/deployments?projectId={project}&limit=2&cursor={cursor}"),
            &user,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["provider"], "vercel");
    assert!(page.get("nextCursor").is_none(), "{page:#}");

    // The stream of a finished deployment replays its log and ends; `Last-Event-ID` resumes.
    let id = page["items"][0]["id"].as_str().unwrap();
    let all = stack.watch_to_end(&user, id).await;
    let second = all[1]["sequence"].as_i64().unwrap();
    let response = stack
        .gateway
        .get(&format!("/api/deployments/{id}/events"), &user)
        .header("last-event-id", second.to_string())
        .send()
        .await
        .unwrap();
    let resumed = EventStream::new(response).rest().await;
    assert_eq!(resumed.len(), all.len() - 2, "{resumed:#?}");
    assert_eq!(resumed[0]["sequence"], all[2]["sequence"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_connection_gets_422_naming_the_route_and_nothing_is_sent() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.unconnected_site(&user).await;

    let response = stack
        .post_deploy(&user, json!({"projectId": project, "provider": "vercel"}))
        .await;
    let problem = assert_problem(response, 422).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("PUT /api/integrations/vercel"),
        "{problem:#}"
    );
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("failed-precondition")
    );
    assert!(stack.vercel.requests().is_empty(), "nothing sent to Vercel");

    // Nothing was recorded either.
    let page: Value = stack
        .gateway
        .get("/api/deployments", &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_build_reaches_canceled_on_the_live_stream_and_calls_the_provider() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;
    stack.vercel.hold(true);

    let deployment = stack
        .deploy(&user, json!({"projectId": project, "provider": "vercel"}))
        .await;
    let id = deployment["id"].as_str().unwrap();
    let building = stack.wait_for_state(&user, id, "building").await;
    let provider_id = building["providerDeploymentId"]
        .as_str()
        .unwrap()
        .to_string();

    // The stream replays the log up to `building`; then, idle while the provider builds, it
    // sends heartbeat comments.
    let mut stream = stack.events(&user, id).await;
    let mut seen = Vec::new();
    let mut last_event = tokio::time::Instant::now();
    while let Frame::Event(_, _, event) = stream
        .next()
        .await
        .expect("the stream stays open while building")
    {
        assert_eq!(event["final"], false, "{event:#}");
        seen.push(event);
        last_event = tokio::time::Instant::now();
    }
    assert_eq!(
        states(&seen).last().map(String::as_str),
        Some("building"),
        "{seen:#?}"
    );
    assert!(
        last_event.elapsed() >= Duration::from_secs(5),
        "a heartbeat is sent when idle, not between events"
    );

    let response = stack
        .gateway
        .post(&format!("/api/deployments/{id}/cancel"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let canceled: Value = response.json().await.unwrap();
    assert_eq!(canceled["state"], "canceled");
    assert!(is_rfc3339(&canceled["finishedAt"]));

    // The open stream sees the change and ends with it.
    let rest = stream.rest().await;
    let last = rest.last().expect("the final event");
    assert_eq!(last["state"], "canceled");
    assert_eq!(last["final"], true);

    let cancels = stack.vercel.matching("PATCH", "/v12/deployments/");
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        cancels[0].path,
        format!("/v12/deployments/{provider_id}/cancel")
    );

    // A final deployment cannot be canceled again.
    let again = stack
        .gateway
        .post(&format!("/api/deployments/{id}/cancel"), &user)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(again, 422).await;
    assert!(problem["detail"].as_str().unwrap().contains("canceled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_makes_the_previous_ready_deployment_live_again() {
    let stack = DeployStack::start().await;
    let user = unique_user("dep");
    let project = stack.site(&user).await;
    let body = json!({"projectId": project, "provider": "netlify"});

    let first = stack.deploy(&user, body.clone()).await;
    let first_id = first["id"].as_str().unwrap();
    stack.watch_to_end(&user, first_id).await;
    let first = stack.get(&user, first_id).await;

    // Nothing before the first deployment to go back to.
    let response = stack
        .gateway
        .post(&format!("/api/deployments/{first_id}/rollback"), &user)
        .send()
        .await
        .unwrap();
    assert_problem(response, 422).await;

    let second = stack.deploy(&user, body).await;
    let second_id = second["id"].as_str().unwrap();
    stack.watch_to_end(&user, second_id).await;

    let response = stack
        .gateway
        .post(&format!("/api/deployments/{second_id}/rollback"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let rollback: Value = response.json().await.unwrap();
    assert_eq!(rollback["rollbackOf"], first_id);
    assert_eq!(rollback["provider"], "netlify");
    let rollback_id = rollback["id"].as_str().unwrap();
    assert_ne!(rollback_id, first_id);
    assert_ne!(rollback_id, second_id);

    let events = stack.watch_to_end(&user, rollback_id).await;
    assert_eq!(events.last().unwrap()["state"], "ready", "{events:#?}");
    let restores: Vec<String> = stack
        .netlify
        .matching("POST", "/api/v1/sites/")
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.ends_with("/restore"))
        .collect();
    let first_provider_id = first["providerDeploymentId"].as_str().unwrap();
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert!(
        restores[0].ends_with(&format!("/deploys/{first_provider_id}/restore")),
        "{restores:?}"
    );
}
