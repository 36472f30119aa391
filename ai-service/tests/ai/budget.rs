//! The monthly budget: the most a call can cost is held before the provider is called and
//! settled to what it really cost, so concurrent calls cannot overshoot; holds of failed calls
//! are released, and holds of calls that never ended expire.

use std::time::Duration;

use ai_service::Config;
use ai_service::ledger::{Reservation, UsageLedger};
use ai_service::task::Task;
use autocrea_proto::ai::v1 as pb;
use service_runtime::db::Database;
use service_runtime::testing::{fresh_postgres_url, fresh_sqlite_url};
use tonic::Code;

use crate::fake_provider::*;
use crate::helpers::*;

fn explain(code: &str) -> pb::ExplainRequest {
    pb::ExplainRequest {
        code: code.into(),
        language: "python".into(),
    }
}

/// The most an explain of `code` may cost, as ai-service holds it.
fn most_of(code: &str) -> u64 {
    Task::explain(&explain(code), &ai_service::Limits::default())
        .expect("valid")
        .model_request()
        .max_billable_tokens()
}

/// Makes the fake bill each call exactly the most an explain of `code` may cost: the worst
/// case the budget must survive.
fn bill_the_most(fake: &FakeProvider, code: &str) -> u64 {
    let most = most_of(code);
    fake.set_usage(most - 2048, 2048);
    most
}

#[tokio::test]
async fn a_call_the_budget_cannot_cover_is_refused_with_a_clear_message() {
    let fake = FakeProvider::start().await;
    let most = bill_the_most(&fake, "a = 1");
    let (mut config, dir) = sqlite_config(Some(openai(&fake)));
    // Room for two calls and a half.
    let budget = 2 * most + most / 2;
    config.monthly_token_budget = Some(budget);
    let mut app = spawn(config, Some(dir)).await;
    // Different code of the same length: each call may cost the same, and none is a cache hit.
    for code in ["a = 1", "a = 2"] {
        app.client
            .explain(req(explain(code)))
            .await
            .unwrap_or_else(|s| panic!("{code}: {s:?}"));
    }
    let status = app
        .client
        .explain(req(explain("a = 3")))
        .await
        .expect_err("over budget");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let message = status.message();
    assert!(
        message.contains(&format!("{} of {budget} tokens spent", 2 * most)),
        "{message}"
    );
    assert!(
        message.contains(&format!("may use up to {most}")),
        "{message}"
    );
    assert!(message.contains("resets at"), "{message}");
    assert_eq!(meta(status.metadata(), "x-ai-error"), Some("budget"));
    let retry: u64 = meta(status.metadata(), "retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 31 * 86_400);
    assert_eq!(
        fake.calls(),
        2,
        "the refused call never reached the provider"
    );
    let usage = app.usage(USER).await;
    assert_eq!(usage.monthly_token_budget, Some(budget));
    assert_eq!(usage.monthly_tokens_remaining, Some(budget - 2 * most));
    // Budgets are per user.
    app.client
        .explain(as_user("another-user", explain("a = 3")))
        .await
        .expect("another user has budget");
}

/// 20 calls at once against a budget with room for 5 (and a half): 5 are served, 15 refused,
/// and the ledger ends within the budget even though each call costs the most it may.
async fn twenty_concurrent_calls_and_room_for_five(config: Config, fake: &FakeProvider) {
    let mut config = config;
    let most = bill_the_most(fake, "x = 0");
    let budget = 5 * most + most / 2;
    config.monthly_token_budget = Some(budget);
    config.provider = Some(openai(fake));
    // The provider answers slowly, so every call has asked for budget before any has ended.
    fake.script((0..20).map(|_| Reply::Slow(Duration::from_millis(300), Box::new(Reply::Answer))));
    let mut app = spawn(config, None).await;
    let calls = (0..20).map(|n| {
        let mut client = app.client.clone();
        // Same length, so each may cost the same; different text, so no cache hits.
        let code = format!("x = {}", n % 10);
        let code = if n < 10 { code } else { code.replace('x', "y") };
        async move { client.explain(req(explain(&code))).await }
    });
    let results = futures::future::join_all(calls).await;
    let served = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(served, 5, "{refused:?}");
    assert!(
        refused.iter().all(|s| s.code() == Code::ResourceExhausted),
        "{refused:?}"
    );
    assert_eq!(fake.calls(), 5);
    let month = app.usage(USER).await.month.unwrap();
    assert_eq!(month.requests, 5);
    assert!(
        month.tokens_used <= budget,
        "{} > {budget}",
        month.tokens_used
    );
    assert_eq!(month.tokens_used, 5 * most);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_race_on_sqlite() {
    let fake = FakeProvider::start().await;
    let (url, _dir) = fresh_sqlite_url();
    twenty_concurrent_calls_and_room_for_five(Config::new(url), &fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_race_on_postgres() {
    let fake = FakeProvider::start().await;
    twenty_concurrent_calls_and_room_for_five(Config::new(fresh_postgres_url().await), &fake).await;
}

/// The most a generate of `prompt` may cost.
fn most_of_generate(prompt: &str) -> u64 {
    Task::generate(&generate(prompt), &ai_service::Limits::default())
        .expect("valid")
        .model_request()
        .max_billable_tokens()
}

#[tokio::test]
async fn a_call_that_fails_gives_its_hold_back_at_once() {
    let fake = FakeProvider::start().await;
    let (mut config, dir) = sqlite_config(Some(openai(&fake)));
    // Room for either call alone, never for both: a hold left behind refuses the next call.
    config.monthly_token_budget = Some(most_of("a = 1") + most_of_generate("a = 1") - 1);
    let mut app = spawn(config, Some(dir)).await;
    let rejected = || Reply::Error {
        status: 400,
        error_type: "invalid_request_error",
        headers: vec![],
    };
    fake.script([rejected(), rejected()]);
    let status = app
        .client
        .explain(req(explain("a = 1")))
        .await
        .expect_err("the provider refuses");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    // A stream failing before its first token fails the call itself.
    let status = app
        .client
        .generate_stream(req(generate("a = 1")))
        .await
        .expect_err("the provider refuses the stream");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    app.client
        .explain(req(explain("a = 1")))
        .await
        .expect("served after the failures");
    assert_eq!(fake.calls(), 3);
    let month = app.usage(USER).await.month.unwrap();
    assert_eq!(month.tokens_used, OPENAI_INPUT + OPENAI_OUTPUT);
}

#[tokio::test]
async fn a_stream_is_settled_to_what_it_cost() {
    let fake = FakeProvider::start().await;
    // Room for one stream at a time: each must give back what it did not use.
    let most = most_of_generate("three");
    let (mut config, dir) = sqlite_config(Some(anthropic(&fake)));
    config.monthly_token_budget = Some(most + most / 2);
    let mut app = spawn(config, Some(dir)).await;
    for prompt in ["one", "two", "three"] {
        let events = app.generate_stream(generate(prompt)).await;
        assert!(
            matches!(
                events.last(),
                Some(pb::generate_stream_event::Event::Done(_))
            ),
            "{prompt}: {events:?}"
        );
    }
    let month = app.usage(USER).await.month.unwrap();
    assert_eq!(month.tokens_used, 3 * (ANTHROPIC_INPUT + ANTHROPIC_OUTPUT));
}

async fn ledger_on(url: &str) -> UsageLedger {
    let url = secrecy::SecretString::from(url.to_string());
    UsageLedger::new(
        Database::open("ai", &url, 10, &ai_service::ledger::MIGRATIONS)
            .await
            .unwrap(),
    )
}

fn hold(user: &str, tokens: u64, budget: u64, ttl: Duration) -> Reservation<'_> {
    let now = ai_service::clock::now_ms();
    Reservation {
        user_id: user,
        tokens,
        budget,
        since_ms: ai_service::clock::month_start(now),
        now_ms: now,
        ttl,
    }
}

/// Holds of calls that never end (the process died) stop counting when they expire; 50
/// reservations at once never hold more than the budget.
async fn holds_expire_and_never_overshoot(url: &str) {
    let ledger = ledger_on(url).await;
    let short = Duration::from_millis(300);
    ledger
        .reserve(&hold("u", 60, 100, short))
        .await
        .unwrap()
        .expect("fits");
    let refusal = ledger
        .reserve(&hold("u", 60, 100, short))
        .await
        .unwrap()
        .expect_err("held");
    assert_eq!((refusal.spent, refusal.held), (0, 60));
    tokio::time::sleep(short * 2).await;
    ledger
        .reserve(&hold("u", 60, 100, short))
        .await
        .unwrap()
        .expect("the first hold expired");

    let race = (0..50).map(|_| {
        let ledger = ledger.clone();
        async move {
            ledger
                .reserve(&hold("racer", 10, 55, Duration::from_secs(60)))
                .await
                .unwrap()
        }
    });
    let results = futures::future::join_all(race).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_holds_on_sqlite() {
    let (url, _dir) = fresh_sqlite_url();
    holds_expire_and_never_overshoot(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_holds_on_postgres() {
    holds_expire_and_never_overshoot(&fresh_postgres_url().await).await;
}
