//! Users' own provider accounts: verified on save, sealed at rest, rotated; deploys land in the
//! caller's account and each project gets one home per provider.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use autocrea_proto::deploy::v1 as pb;
use sqlx::Row;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{
    ALICE, BOB, Backend, TestApp, expect_code, first_token, request, second_token,
};
use crate::{fake_netlify, fake_railway, fake_vercel, on_both_databases};

on_both_databases!(
    two_users_deploy_same_named_projects_into_their_own_accounts,
    rotating_secrets_key_keeps_deploys_working_and_reseals_every_row,
);

async fn two_users_deploy_same_named_projects_into_their_own_accounts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for provider in ["vercel", "netlify", "railway"] {
        app.connect(BOB, provider, second_token(provider))
            .await
            .expect("connect Bob");
    }
    // Both projects are named "site".
    let alice_project = app.site(ALICE).await;
    let bob_project = app.site(BOB).await;
    let mut done = HashMap::new();
    for (user, project) in [(ALICE, &alice_project), (BOB, &bob_project)] {
        for provider in ["vercel", "netlify", "railway"] {
            let mut req = request(project, provider);
            if provider == "railway" {
                req.env = HashMap::from([(format!("ONLY_{user}"), "1".to_string())]);
            }
            let created = app.create(user, req).await.expect("create");
            let finished = app.finish(user, &created.id).await;
            assert_eq!(finished.state, "ready", "{finished:?}");
            assert_eq!(finished.account, "user");
            done.insert((user, provider), finished);
        }
    }

    {
        let vercel = app.vercel.state.lock().unwrap();
        for (user, account) in [(ALICE, "user_1"), (BOB, "user_2")] {
            let id = &done[&(user, "vercel")].provider_deployment_id;
            assert_eq!(vercel.deployments[id].account, account);
            let projects = vercel.projects_of(account);
            assert_eq!(projects.len(), 1, "{projects:?}");
            assert_eq!(projects[0].name, "site", "named after the AutoCrea project");
        }
        let netlify = app.netlify.state.lock().unwrap();
        for (user, account) in [(ALICE, "acct_1"), (BOB, "acct_2")] {
            let deploy = &netlify.deploys[&done[&(user, "netlify")].provider_deployment_id];
            assert_eq!(netlify.sites[&deploy.site_id].account, account);
        }
        let railway = app.railway.state.lock().unwrap();
        for (user, project, other) in [
            (ALICE, fake_railway::PROJECT, BOB),
            (BOB, fake_railway::OTHER_PROJECT, ALICE),
        ] {
            let services = railway.services_of(project);
            assert_eq!(services.len(), 1, "{services:?}");
            let variables = &services[0].variables;
            assert_eq!(
                variables.get(&format!("ONLY_{user}")).map(String::as_str),
                Some("1")
            );
            assert!(
                !variables.contains_key(&format!("ONLY_{other}")),
                "{variables:?}"
            );
        }
    }
    // Every call carried the token of the account it acted in.
    for (fake, first, second) in [
        (
            app.vercel.requests(),
            fake_vercel::TOKEN,
            fake_vercel::OTHER_TOKEN,
        ),
        (
            app.netlify.requests(),
            fake_netlify::TOKEN,
            fake_netlify::OTHER_TOKEN,
        ),
        (
            app.railway.requests(),
            fake_railway::TOKEN,
            fake_railway::OTHER_TOKEN,
        ),
    ] {
        let firsts = fake
            .iter()
            .filter(|r| r.headers["authorization"] == format!("Bearer {first}"))
            .count();
        let seconds = fake
            .iter()
            .filter(|r| r.headers["authorization"] == format!("Bearer {second}"))
            .count();
        assert!(firsts > 0 && seconds > 0);
        assert_eq!(
            firsts + seconds,
            fake.len(),
            "no call without a user's token"
        );
    }
    let railway_uploads: Vec<(String, String)> = app
        .railway
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/up"))
        .map(|r| (r.path.clone(), r.headers["authorization"].clone()))
        .collect();
    assert_eq!(railway_uploads.len(), 2);
    for (path, token) in railway_uploads {
        let expected = if path.contains(fake_railway::PROJECT) {
            fake_railway::TOKEN
        } else {
            fake_railway::OTHER_TOKEN
        };
        assert_eq!(token, format!("Bearer {expected}"));
    }

    // Neither sees the other's deployments or mapping.
    let alice_vercel = &done[&(ALICE, "vercel")];
    expect_code(app.get(BOB, &alice_vercel.id).await, Code::NotFound);
    expect_code(app.targets(BOB, &alice_project).await, Code::NotFound);
    let targets = app.targets(ALICE, &alice_project).await.unwrap();
    assert_eq!(
        targets
            .iter()
            .map(|t| t.provider.as_str())
            .collect::<Vec<_>>(),
        ["netlify", "railway", "vercel"]
    );
    let vercel_target = targets.iter().find(|t| t.provider == "vercel").unwrap();
    assert_eq!(vercel_target.account_id, "user_1");
    assert_eq!(vercel_target.target_name, "site");
    assert_eq!(vercel_target.url, alice_vercel.url);
    let listed = app.list(BOB, Default::default()).await.unwrap();
    assert!(
        listed
            .deployments
            .iter()
            .all(|d| d.project_id == bob_project)
    );

    // A second project of the same name gets its own, uniquely named, Vercel project.
    let again = app.site(ALICE).await;
    let created = app.deploy(ALICE, &again, "vercel").await;
    assert_eq!(app.finish(ALICE, &created.id).await.state, "ready");
    let targets = app.targets(ALICE, &again).await.unwrap();
    assert_eq!(targets[0].target_name, format!("site-{}", &again[..8]));
    assert_ne!(targets[0].target_id, vercel_target.target_id);

    // Deleting the project forgets the mappings (the provider side stays).
    let forgotten = app
        .client()
        .forget_project(crate::helpers::as_user(
            ALICE,
            pb::ForgetProjectRequest {
                project_id: alice_project.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forgotten.forgotten, 3);
    assert_eq!(
        app.vercel.state.lock().unwrap().projects_of("user_1").len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_verified_sealed_listed_and_removed_without_showing_the_token() {
    let app = TestApp::spawn_unconnected(Backend::Sqlite, |_| {}).await;
    // A token the provider refuses: 422 with the provider's answer, nothing stored.
    let refused = expect_code(
        app.connect(BOB, "netlify", "not-a-real-token").await,
        Code::FailedPrecondition,
    );
    assert!(refused.message().contains("Netlify"), "{refused:?}");
    assert!(refused.message().contains("Access Denied"), "{refused:?}");
    assert!(app.connections(BOB).await.is_empty());
    let db = app.database().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_connections")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    let saved = app
        .connect(BOB, "vercel", fake_vercel::TOKEN)
        .await
        .expect("connect");
    assert_eq!(saved.account_id, "user_1");
    assert_eq!(
        saved.token_last4,
        &fake_vercel::TOKEN[fake_vercel::TOKEN.len() - 4..]
    );
    assert!(saved.created_at_ms > 0);
    assert_eq!(saved.last_used_at_ms, 0);
    let listed = app.connections(BOB).await;
    assert_eq!(listed.len(), 1);
    assert!(!format!("{listed:?}").contains(fake_vercel::TOKEN));

    // At rest, the row holds ciphertext: not the token, nor its bytes in any encoding we use.
    let row = sqlx::query("SELECT * FROM provider_connections")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let mut stored = String::new();
    for i in 0..row.len() {
        if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
            stored.push_str(&text);
            stored.push('\n');
        }
    }
    use base64::Engine;
    for form in [
        fake_vercel::TOKEN.to_string(),
        hex::encode(fake_vercel::TOKEN),
        base64::engine::general_purpose::STANDARD.encode(fake_vercel::TOKEN),
    ] {
        assert!(!stored.contains(&form), "{stored}");
    }

    // Used by a deploy: last use recorded.
    let project = app.site(BOB).await;
    let created = app.deploy(BOB, &project, "vercel").await;
    app.finish(BOB, &created.id).await;
    assert!(app.connections(BOB).await[0].last_used_at_ms > 0);

    // Railway needs a project or a workspace; a workspace gets a project created in it.
    let status = expect_code(
        app.put_connection(
            BOB,
            pb::PutConnectionRequest {
                provider: "railway".into(),
                token: fake_railway::TOKEN.into(),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "projectId"
    );
    let status = expect_code(
        app.put_connection(
            BOB,
            pb::PutConnectionRequest {
                provider: "netlify".into(),
                token: fake_netlify::TOKEN.into(),
                team_id: Some("team_1".into()),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("Vercel"), "{status:?}");
    let railway = app
        .put_connection(
            BOB,
            pb::PutConnectionRequest {
                provider: "railway".into(),
                token: fake_railway::OTHER_TOKEN.into(),
                workspace_id: Some("ws-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(railway.account_id, "railway_user_2");
    {
        let state = app.railway.state.lock().unwrap();
        let created = &state.projects[&railway.project_id];
        assert_eq!(created.account, "railway_user_2");
        assert_eq!(created.environments[0].0, railway.environment_id);
    }
    // The given environment must be one of the project's.
    let status = expect_code(
        app.put_connection(
            ALICE,
            pb::PutConnectionRequest {
                provider: "railway".into(),
                token: fake_railway::TOKEN.into(),
                project_id: Some(fake_railway::PROJECT.into()),
                environment_id: Some(fake_railway::OTHER_ENVIRONMENT.into()),
                ..Default::default()
            },
        )
        .await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("not an environment"),
        "{status:?}"
    );

    // Removed: gone from the list, deploys refused again, a second removal is not found.
    let delete = |provider: &str| {
        let mut client = app.client();
        let request = crate::helpers::as_user(
            BOB,
            pb::DeleteConnectionRequest {
                provider: provider.to_string(),
            },
        );
        async move { client.delete_connection(request).await }
    };
    delete("vercel").await.unwrap();
    expect_code(delete("vercel").await, Code::NotFound);
    assert_eq!(app.connections(BOB).await.len(), 1, "railway stays");
    expect_code(
        app.create(BOB, request(&project, "vercel")).await,
        Code::FailedPrecondition,
    );
}

async fn rotating_secrets_key_keeps_deploys_working_and_reseals_every_row(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    app.connect(BOB, "netlify", second_token("netlify"))
        .await
        .unwrap();
    let db = app.database().await;
    let key_ids = || async {
        let ids: Vec<String> = sqlx::query_scalar("SELECT key_id FROM provider_connections")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        ids
    };
    let before = key_ids().await;
    assert_eq!(before.len(), 4);

    // The operator rotates: a new SECRETS_KEY, the old one as SECRETS_KEY_PREVIOUS.
    app.stop_deploy().await;
    let old = app.config.secrets_key.clone();
    app.config.secrets_key = Some(deploy_service::Keyring::generate_key());
    app.config.secrets_key_previous = old;
    app.start_deploy_again().await;
    let project = app.site(ALICE).await;
    let created = app.deploy(ALICE, &project, "vercel").await;
    assert_eq!(app.finish(ALICE, &created.id).await.state, "ready");

    // The pass at start (or the command, whichever comes first) moves every row.
    let moved = deploy_service::reencrypt_secrets(&app.config)
        .await
        .unwrap();
    assert!(moved <= 4);
    let after = key_ids().await;
    assert_eq!(after.len(), 4);
    assert!(
        after.iter().all(|id| *id == after[0] && *id != before[0]),
        "{after:?}"
    );

    // Without the old key at all, every connection still opens: nothing was left behind.
    app.stop_deploy().await;
    app.config.secrets_key_previous = None;
    app.start_deploy_again().await;
    for (user, provider) in [(ALICE, "railway"), (BOB, "netlify")] {
        let project = app.site(user).await;
        let created = app.deploy(user, &project, provider).await;
        let done = app.finish(user, &created.id).await;
        assert_eq!(done.state, "ready", "{done:?}");
    }
    assert_eq!(
        deploy_service::reencrypt_secrets(&app.config)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn railway_ships_the_project_as_a_tarball_to_its_own_service() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.connect(BOB, "railway", second_token("railway"))
        .await
        .unwrap();
    let files: [(&str, &[u8]); 4] = [
        ("package.json", br#"{"name":"api"}"#),
        ("src/index.js", b"console.log('hi')"),
        ("src/nested/deep name.txt", b"deep"),
        ("copy.js", b"console.log('hi')"),
    ];
    let project = app.project_with(ALICE, &files).await;
    let mut req = request(&project, "railway");
    req.env = HashMap::from([("SECRET_A".to_string(), "a".to_string())]);
    let first = app.create(ALICE, req).await.unwrap();
    assert_eq!(app.finish(ALICE, &first.id).await.state, "ready");

    let unpacked = |tarball: &[u8]| {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
        let mut found = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            found.insert(entry.path().unwrap().display().to_string(), content);
        }
        found
    };
    let expected: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(path, content)| (path.to_string(), content.to_vec()))
        .collect();
    let upload = app.railway.state.lock().unwrap().uploads[0].clone();
    assert_eq!(unpacked(&upload.tarball), expected);
    assert_eq!(upload.project, fake_railway::PROJECT);
    assert_eq!(
        upload.environment,
        fake_railway::ENVIRONMENT,
        "the production environment"
    );

    // A second deploy of the same project goes to the same service.
    app.put_file(ALICE, &project, "src/index.js", b"console.log('v2')")
        .await;
    let second = app.deploy(ALICE, &project, "railway").await;
    assert_eq!(app.finish(ALICE, &second.id).await.state, "ready");
    assert_eq!(app.railway.operations("serviceCreate").len(), 1);
    {
        let state = app.railway.state.lock().unwrap();
        assert_eq!(state.uploads.len(), 2);
        assert_eq!(state.uploads[1].service, upload.service);
        assert_eq!(
            unpacked(&state.uploads[1].tarball)["src/index.js"],
            b"console.log('v2')"
        );
    }

    // Bob's variables go to his own service, in his own project.
    let bob_project = app.project_with(BOB, &files).await;
    let mut req = request(&bob_project, "railway");
    req.env = HashMap::from([("SECRET_B".to_string(), "b".to_string())]);
    let bob = app.create(BOB, req).await.unwrap();
    assert_eq!(app.finish(BOB, &bob.id).await.state, "ready");
    let state = app.railway.state.lock().unwrap();
    let alice_service = &state.services[&upload.service];
    assert_eq!(
        alice_service.variables.keys().collect::<Vec<_>>(),
        ["SECRET_A"]
    );
    let bob_services = state.services_of(fake_railway::OTHER_PROJECT);
    assert_eq!(bob_services.len(), 1);
    assert_eq!(
        bob_services[0].variables.keys().collect::<Vec<_>>(),
        ["SECRET_B"]
    );
    assert_eq!(first_token("railway"), fake_railway::TOKEN);
}
