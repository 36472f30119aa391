//! Provider failures: retried when transient, mapped to the documented status when not.

use std::time::Duration;

use autocrea_proto::ai::v1 as pb;
use tonic::Code;

use crate::fake_provider::*;
use crate::helpers::*;

fn explain() -> pb::ExplainRequest {
    pb::ExplainRequest {
        code: "print(1)".into(),
        language: "python".into(),
    }
}

fn error(status: u16, error_type: &'static str, headers: Vec<(&'static str, String)>) -> Reply {
    Reply::Error {
        status,
        error_type,
        headers,
    }
}

#[tokio::test]
async fn overloaded_and_rate_limited_calls_are_retried_then_succeed() {
    let fake = FakeProvider::start().await;
    fake.script([
        error(529, "overloaded_error", vec![("retry-after", "0".into())]),
        error(
            429,
            "rate_limit_error",
            vec![("retry-after-ms", "30".into())],
        ),
    ]);
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let r = app
        .client
        .explain(req(explain()))
        .await
        .expect("third try succeeds");
    assert_eq!(fake.calls(), 3);
    let ms: u64 = meta(r.metadata(), "x-provider-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms >= 30, "provider time includes the retry wait: {ms}");
}

#[tokio::test]
async fn dropped_connections_and_slow_first_bytes_are_retried() {
    let fake = FakeProvider::start().await;
    // The stream's first-byte timeout is 500 ms in tests.
    fake.script([
        Reply::DropConnection,
        Reply::Slow(Duration::from_millis(1500), Box::new(Reply::Answer)),
    ]);
    let mut app = spawn_with(Some(openai(&fake))).await;
    let mut stream = app
        .client
        .generate_stream(req(generate("hello")))
        .await
        .expect("third try succeeds")
        .into_inner();
    let mut last = None;
    while let Some(e) = stream.message().await.expect("message") {
        last = e.event;
    }
    assert!(matches!(
        last,
        Some(pb::generate_stream_event::Event::Done(_))
    ));
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn exhausted_retries_answer_unavailable_with_a_retry_hint() {
    let fake = FakeProvider::start().await;
    let overloaded = || error(529, "overloaded_error", vec![("retry-after", "1".into())]);
    fake.script([overloaded(), overloaded(), overloaded(), overloaded()]);
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let status = app
        .client
        .explain(req(explain()))
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(meta(status.metadata(), "retry-after"), Some("1"));
    assert_eq!(
        meta(status.metadata(), "x-upstream-error"),
        Some("overloaded")
    );
    assert!(status.message().contains("529"), "{}", status.message());
    assert_eq!(fake.calls(), 3, "first try plus two retries");
}

#[tokio::test]
async fn rejected_credentials_are_a_distinct_status_without_the_key() {
    for config in [
        |f: &FakeProvider| {
            let mut c = anthropic(f);
            c.api_key = Some("sk-wrong-key-do-not-echo".to_string().into());
            c
        },
        |f: &FakeProvider| {
            let mut c = openai(f);
            c.api_key = Some("sk-wrong-key-do-not-echo".to_string().into());
            c
        },
    ] {
        let fake = FakeProvider::start().await;
        let mut app = spawn_with(Some(config(&fake))).await;
        let status = app
            .client
            .explain(req(explain()))
            .await
            .expect_err("credentials");
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(
            meta(status.metadata(), "x-upstream-error"),
            Some("credentials")
        );
        assert!(
            status.message().contains("credentials"),
            "{}",
            status.message()
        );
        assert!(
            !status.message().contains("sk-wrong"),
            "{}",
            status.message()
        );
        assert!(!format!("{:?}", status.metadata()).contains("sk-wrong"));
        assert_eq!(fake.calls(), 1, "never retried");
    }
}

#[tokio::test]
async fn quota_exhaustion_and_bad_requests_are_not_retried() {
    let fake = FakeProvider::start().await;
    fake.script([
        error(429, "insufficient_quota", vec![("retry-after", "1".into())]),
        error(400, "invalid_request_error", vec![]),
    ]);
    let mut app = spawn_with(Some(openai(&fake))).await;
    let status = app.client.explain(req(explain())).await.expect_err("quota");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(meta(status.metadata(), "x-upstream-error"), Some("quota"));
    assert_eq!(fake.calls(), 1);
    let status = app
        .client
        .explain(req(explain()))
        .await
        .expect_err("rejected");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        meta(status.metadata(), "x-upstream-error"),
        Some("rejected")
    );
    assert!(
        !status.message().contains("scripted failure"),
        "no raw provider body"
    );
    assert_eq!(fake.calls(), 2);
}
