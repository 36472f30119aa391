//! The usage ledger on SQLite and PostgreSQL.

use ai_service::Config;
use autocrea_proto::ai::v1 as pb;
use service_runtime::testing::fresh_postgres_url;

use crate::fake_provider::*;
use crate::helpers::*;

fn explain(code: &str) -> pb::ExplainRequest {
    pb::ExplainRequest {
        code: code.into(),
        language: "python".into(),
    }
}

/// A mix of calls by two users, then each user's totals.
async fn usage_totals_after_a_mix_of_calls(mut app: TestApp) {
    let c = &mut app.client;
    c.explain(req(explain("print(1)"))).await.expect("explain");
    c.explain(req(explain("print(1)")))
        .await
        .expect("cached explain");
    c.generate(req(generate("hello"))).await.expect("generate");
    let mut s = c
        .chat_stream(req(pb::ChatRequest {
            project_id: Some("proj_1".into()),
            ..chat("hi")
        }))
        .await
        .expect("chat stream")
        .into_inner();
    while s.message().await.expect("message").is_some() {}
    c.explain(as_user("someone-else", explain("print(2)")))
        .await
        .expect("other user");

    let usage = app.usage(USER).await;
    for period in [usage.day.unwrap(), usage.month.unwrap()] {
        assert_eq!(period.requests, 4);
        assert_eq!(period.cached_requests, 1);
        assert_eq!(period.input_tokens, 3 * ANTHROPIC_INPUT);
        assert_eq!(period.output_tokens, 3 * ANTHROPIC_OUTPUT);
        assert_eq!(period.tokens_used, 3 * (ANTHROPIC_INPUT + ANTHROPIC_OUTPUT));
        assert!(period.start.ends_with("T00:00:00Z"), "{}", period.start);
        let ops: Vec<_> = period
            .by_operation
            .iter()
            .map(|o| {
                (
                    o.operation.as_str(),
                    o.requests,
                    o.cached_requests,
                    o.tokens_used,
                )
            })
            .collect();
        let t = ANTHROPIC_INPUT + ANTHROPIC_OUTPUT;
        assert_eq!(
            ops,
            [
                ("chat", 1, 0, t),
                ("explain", 2, 1, t),
                ("generate", 1, 0, t)
            ]
        );
    }
    assert_eq!(usage.monthly_token_budget, None);
    let other = app.usage("someone-else").await;
    assert_eq!(other.month.unwrap().requests, 1);
}

#[tokio::test]
async fn usage_totals_on_sqlite() {
    let fake = FakeProvider::start().await;
    let app = spawn_with(Some(anthropic(&fake))).await;
    usage_totals_after_a_mix_of_calls(app).await;
    assert_eq!(fake.calls(), 4);
}

#[tokio::test]
async fn usage_totals_on_postgres() {
    let fake = FakeProvider::start().await;
    let mut config = Config::new(fresh_postgres_url().await);
    config.caller_keys = Some(service_runtime::testing::caller_keys());
    config.provider = Some(anthropic(&fake));
    let app = spawn(config, None).await;
    usage_totals_after_a_mix_of_calls(app).await;
    assert_eq!(fake.calls(), 4);
}
