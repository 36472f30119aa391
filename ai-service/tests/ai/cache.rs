//! The prompt cache: in memory and in Redis, scoped per user unless configured global, what it
//! never caches, and a Redis that is down.

use autocrea_proto::ai::v1 as pb;
use service_runtime::testing::redis_url;

use crate::fake_provider::*;
use crate::helpers::*;

#[tokio::test]
async fn identical_requests_are_answered_from_the_memory_cache() {
    let fake = FakeProvider::start().await;
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let first = app
        .client
        .generate(req(generate("a greeting")))
        .await
        .expect("first")
        .into_inner();
    assert!(!first.usage.as_ref().unwrap().cached);
    // Same request modulo surrounding whitespace and line endings.
    let second = app
        .client
        .generate(req(generate("  a greeting\r\n")))
        .await
        .expect("second");
    assert_eq!(meta(second.metadata(), "x-cache"), Some("hit"));
    assert!(meta(second.metadata(), "x-provider-ms").is_none());
    let second = second.into_inner();
    assert!(second.usage.as_ref().unwrap().cached);
    assert_eq!(second.code, first.code);
    assert_eq!(
        (
            second.usage.as_ref().unwrap().tokens_used,
            second.usage.as_ref().unwrap().input_tokens,
            second.usage.as_ref().unwrap().output_tokens
        ),
        (0, 0, 0)
    );
    assert_eq!(fake.calls(), 1, "the provider saw one call");

    // A stream of the same request is served from cache too: one delta, then done.
    let mut s = app
        .client
        .generate_stream(req(generate("a greeting")))
        .await
        .expect("stream")
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = s.message().await.expect("message") {
        events.push(e.event.expect("event"));
    }
    assert_eq!(events.len(), 2);
    let Some(pb::generate_stream_event::Event::Done(done)) = events.last() else {
        panic!("done last");
    };
    assert!(done.usage.as_ref().unwrap().cached);
    assert_eq!(fake.calls(), 1);

    // A different language is a different request.
    let mut other = generate("a greeting");
    other.language = "rust".into();
    app.client.generate(req(other)).await.expect("miss");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn chat_is_never_cached() {
    let fake = FakeProvider::start().await;
    let mut app = spawn_with(Some(openai(&fake))).await;
    for _ in 0..2 {
        let r = app
            .client
            .chat(req(chat("hello")))
            .await
            .expect("chat")
            .into_inner();
        assert!(!r.usage.as_ref().unwrap().cached);
    }
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn the_redis_cache_is_shared_between_replicas() {
    let fake = FakeProvider::start().await;
    // A prefix of our own so that runs and parallel tests never see each other's entries.
    let prefix = format!("autocrea-test:{}:", uuid::Uuid::new_v4().simple());
    let replica = || {
        let (mut config, dir) = sqlite_config(Some(anthropic(&fake)));
        config.redis_url = Some(redis_url().into());
        config.cache.redis_prefix = prefix.clone();
        spawn(config, Some(dir))
    };
    let mut one = replica().await;
    let mut two = replica().await;
    let first = one
        .client
        .generate(req(generate("a greeting")))
        .await
        .expect("first")
        .into_inner();
    assert!(!first.usage.as_ref().unwrap().cached);
    let second = two
        .client
        .generate(req(generate("a greeting")))
        .await
        .expect("second")
        .into_inner();
    assert!(
        second.usage.as_ref().unwrap().cached,
        "the other replica's answer came from Redis"
    );
    assert_eq!(second.code, first.code);
    assert_eq!(fake.calls(), 1);
}

/// A configuration whose cache lives in Redis under a prefix of its own, so that runs and
/// parallel tests never see each other's entries.
fn in_redis(fake: &FakeProvider) -> (ai_service::Config, service_runtime::testing::TempDir) {
    let (mut config, dir) = sqlite_config(Some(anthropic(fake)));
    config.redis_url = Some(redis_url().into());
    config.cache.redis_prefix = format!("autocrea-test:{}:", uuid::Uuid::new_v4().simple());
    (config, dir)
}

async fn generate_as(app: &mut TestApp, user: &str, prompt: &str) -> bool {
    app.client
        .generate(as_user(user, generate(prompt)))
        .await
        .expect("generate")
        .into_inner()
        .usage
        .unwrap()
        .cached
}

async fn stream_cached_as(app: &mut TestApp, user: &str, prompt: &str) -> bool {
    let mut s = app
        .client
        .generate_stream(as_user(user, generate(prompt)))
        .await
        .expect("stream")
        .into_inner();
    let mut cached = None;
    while let Some(e) = s.message().await.expect("message") {
        if let Some(pb::generate_stream_event::Event::Done(done)) = e.event {
            cached = Some(done.usage.unwrap().cached);
        }
    }
    cached.expect("a done event")
}

/// User B asks what user A asked: never answered from A's entry, by unary call or stream.
async fn another_users_prompt_is_never_a_hit(mut app: TestApp, fake: &FakeProvider) {
    assert!(!generate_as(&mut app, "user-a", "a secret plan").await);
    assert!(
        generate_as(&mut app, "user-a", "a secret plan").await,
        "A's own hit"
    );
    assert!(!generate_as(&mut app, "user-b", "a secret plan").await);
    assert!(!stream_cached_as(&mut app, "user-c", "a secret plan").await);
    assert_eq!(fake.calls(), 3);
    // B's answer is B's own from now on.
    assert!(generate_as(&mut app, "user-b", "a secret plan").await);
    assert!(stream_cached_as(&mut app, "user-b", "a secret plan").await);
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn the_memory_cache_is_per_user_by_default() {
    let fake = FakeProvider::start().await;
    let app = spawn_with(Some(anthropic(&fake))).await;
    another_users_prompt_is_never_a_hit(app, &fake).await;
}

#[tokio::test]
async fn the_redis_cache_is_per_user_by_default() {
    let fake = FakeProvider::start().await;
    let (config, dir) = in_redis(&fake);
    let app = spawn(config, Some(dir)).await;
    another_users_prompt_is_never_a_hit(app, &fake).await;
}

#[tokio::test]
async fn the_global_scope_shares_answers_between_users() {
    let fake = FakeProvider::start().await;
    for redis in [false, true] {
        let (mut config, dir) = if redis {
            in_redis(&fake)
        } else {
            sqlite_config(Some(anthropic(&fake)))
        };
        config.cache.scope = ai_service::CacheScope::Global;
        let mut app = spawn(config, Some(dir)).await;
        let prompt = format!("shared {redis}");
        assert!(!generate_as(&mut app, "user-a", &prompt).await);
        assert!(
            generate_as(&mut app, "user-b", &prompt).await,
            "redis: {redis}"
        );
    }
    assert_eq!(fake.calls(), 2);
}
