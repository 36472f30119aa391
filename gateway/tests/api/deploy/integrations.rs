//! `/api/integrations`: users' own provider accounts through the gateway; the targets of a
//! project; the integrations group's own budget and the `deploy` scope.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_saved_listed_and_removed_without_ever_showing_the_token() {
    let stack = DeployStack::start().await;
    let user = unique_user("int");

    // A token the provider refuses: 422 with its answer, nothing stored.
    let refused = stack
        .connect(&user, "vercel", json!({"token": "not-a-vercel-token"}))
        .await;
    let problem = assert_problem(refused, 422).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("Vercel") && detail.contains("Not authorized"),
        "{problem:#}"
    );
    assert!(!detail.contains("not-a-vercel-token"));
    let list = |user: String| {
        let request = stack.gateway.get("/api/integrations", &user);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    let listed: Value = serde_json::from_str(&list(user.clone()).await).unwrap();
    assert_eq!(listed["items"], json!([]));

    let saved = stack
        .connect(
            &user,
            "vercel",
            json!({"token": fake_vercel::TOKEN, "teamId": "team_1"}),
        )
        .await;
    assert_eq!(saved.status(), 200);
    let saved: Value = saved.json().await.unwrap();
    assert_eq!(saved["provider"], "vercel");
    assert_eq!(saved["accountId"], "user_1");
    assert_eq!(saved["teamId"], "team_1");
    assert_eq!(
        saved["tokenLast4"],
        &fake_vercel::TOKEN[fake_vercel::TOKEN.len() - 4..]
    );
    assert!(is_rfc3339(&saved["createdAt"]), "{saved:#}");
    assert_eq!(saved["lastUsedAt"], Value::Null);
    let railway = stack
        .connect(
            &user,
            "railway",
            json!({"token": fake_railway::TOKEN, "projectId": fake_railway::PROJECT}),
        )
        .await;
    let railway: Value = railway.json().await.unwrap();
    assert_eq!(railway["environmentId"], fake_railway::ENVIRONMENT);
    let text = list(user.clone()).await;
    for token in [fake_vercel::TOKEN, fake_railway::TOKEN] {
        assert!(!text.contains(token), "{text}");
    }
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // Bad input is 400 naming the field; unknown providers and fields too.
    for (provider, body, field) in [
        (
            "railway",
            json!({"token": fake_railway::TOKEN}),
            "projectId",
        ),
        ("netlify", json!({"token": "has space"}), "token"),
        (
            "netlify",
            json!({"token": "x", "teamId": "team_1"}),
            "teamId",
        ),
        ("heroku", json!({"token": "x"}), "provider"),
    ] {
        let response = stack.connect(&user, provider, body).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem:#}");
    }
    let unknown = stack
        .connect(&user, "netlify", json!({"token": "x", "extra": 1}))
        .await;
    assert_problem(unknown, 400).await;

    // Another user sees none of them.
    let other: Value = serde_json::from_str(&list(unique_user("int_other")).await).unwrap();
    assert_eq!(other["items"], json!([]));

    // Removed once; the second time there is nothing to remove.
    let delete = || {
        stack
            .gateway
            .delete("/api/integrations/vercel", &user)
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_problem(delete().await.unwrap(), 404).await;
    let listed: Value = serde_json::from_str(&list(user.clone()).await).unwrap();
    assert_eq!(listed["items"][0]["provider"], "railway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_need_the_deploy_scope_and_have_their_own_budget() {
    let stack = DeployStack::start_with(
        |_| {},
        |g| {
            g.limits = generous_limits();
            g.limits.integrations = "5/1h".parse().unwrap();
        },
    )
    .await;
    let gw = &stack.gateway;
    let user = unique_user("int_scope");
    let key = |scopes: Value| {
        let request = gw
            .post("/api/auth/keys", &user)
            .json(&json!({"name": "k", "scopes": scopes}));
        async move {
            let created: Value = request.send().await.unwrap().json().await.unwrap();
            created["key"].as_str().unwrap().to_string()
        }
    };
    let read_only = key(json!(["read"])).await;
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let response = gw
            .http
            .request(method.clone(), gw.url("/api/integrations/netlify"))
            .bearer_auth(&read_only)
            .json(&json!({"token": fake_netlify::TOKEN}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        // GET is not a method of this path: the scope check comes first either way.
        assert_eq!(status, 403, "{method}");
    }
    let deployer = key(json!(["deploy"])).await;
    let response = gw
        .http
        .put(gw.url("/api/integrations/netlify"))
        .bearer_auth(&deployer)
        .json(&json!({"token": fake_netlify::TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["ratelimit-limit"], "5");

    // Refused and accepted requests alike count: two refused, one saved, two listings.
    for _ in 0..2 {
        let response = gw.get("/api/integrations", &user).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let refused = gw.get("/api/integrations", &user).send().await.unwrap();
    let problem = assert_problem(refused, 429).await;
    assert!(problem["detail"].as_str().unwrap().contains("integrations"));
    // The deploy group's budget is untouched.
    let deployments = gw.get("/api/deployments", &user).send().await.unwrap();
    assert_eq!(deployments.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_project_forgets_where_it_was_deployed() {
    let stack = DeployStack::start().await;
    let user = unique_user("int_forget");
    let project = stack.site(&user).await;
    let deployment = stack
        .deploy(&user, json!({"projectId": project, "provider": "netlify"}))
        .await;
    stack
        .watch_to_end(&user, deployment["id"].as_str().unwrap())
        .await;
    let targets = format!("/api/projects/{project}/deployments/targets");
    let listed: Value = stack
        .gateway
        .get(&targets, &user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["provider"], "netlify", "{listed:#}");
    assert_eq!(listed["items"][0]["accountId"], "acct_1");
    // Another user does not learn of it.
    let other = stack
        .gateway
        .get(&targets, &unique_user("int_forget_other"))
        .send()
        .await
        .unwrap();
    assert_problem(other, 404).await;

    let deleted = stack
        .gateway
        .delete(&format!("/api/projects/{project}"), &user)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    // The project is gone, its mapping too; the site stays at Netlify.
    assert_problem(
        stack.gateway.get(&targets, &user).send().await.unwrap(),
        404,
    )
    .await;
    let db = service_runtime::db::Database::connect(&stack.deploy_db, 1)
        .await
        .unwrap();
    let homes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_homes")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(homes, 0);
    assert_eq!(stack.netlify.state.lock().unwrap().sites.len(), 1);
}
