//! Streaming: several deltas before the end, usage in the final event, failures before and after
//! the first token, and cancellation when the client goes away.

use std::time::Duration;

use pb::chat_stream_event::Event as ChatEvent;
use pb::generate_stream_event::Event as GenEvent;
use serde_json::json;

use autocrea_proto::ai::v1 as pb;

use crate::fake_provider::*;
use crate::helpers::*;

#[tokio::test]
async fn generate_stream_on_anthropic_sends_several_deltas_then_code_and_usage() {
    let fake = FakeProvider::start().await;
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let response = app
        .client
        .generate_stream(req(generate("a greeting function")))
        .await
        .expect("stream");
    assert!(meta(response.metadata(), "x-provider-ms").is_some());
    let mut stream = response.into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.message().await.expect("message") {
        events.push(e.event.expect("event"));
    }
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            GenEvent::Delta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect();
    assert!(deltas.len() >= 3, "several deltas, got {}", deltas.len());
    assert_eq!(deltas.concat(), DEFAULT_TEXT);
    let Some(GenEvent::Done(done)) = events.last() else {
        panic!("last event is done: {events:?}");
    };
    assert!(done.code.starts_with("def greet(name):"));
    assert_eq!(
        (
            done.usage.as_ref().unwrap().input_tokens,
            done.usage.as_ref().unwrap().output_tokens
        ),
        (ANTHROPIC_INPUT, ANTHROPIC_OUTPUT)
    );
    assert_eq!(done.usage.as_ref().unwrap().model, ANTHROPIC_MODEL);
    assert_eq!(fake.seen()[0].body["stream"], json!(true));
}

#[tokio::test]
async fn chat_stream_on_openai_asks_for_usage_and_reports_it() {
    let fake = FakeProvider::start().await;
    fake.set_text("Hello there, how can I help you today?");
    let mut app = spawn_with(Some(openai(&fake))).await;
    let mut stream = app
        .client
        .chat_stream(req(chat("Say hello")))
        .await
        .expect("stream")
        .into_inner();
    let mut deltas = Vec::new();
    let mut done = None;
    while let Some(e) = stream.message().await.expect("message") {
        match e.event.expect("event") {
            ChatEvent::Delta(d) => deltas.push(d.text),
            ChatEvent::Done(d) => done = Some(d),
            ChatEvent::Error(e) => panic!("unexpected error event {e:?}"),
        }
    }
    assert!(deltas.len() >= 3);
    let done = done.expect("done event");
    assert_eq!(done.message, "Hello there, how can I help you today?");
    assert_eq!(
        (
            done.usage.as_ref().unwrap().input_tokens,
            done.usage.as_ref().unwrap().output_tokens
        ),
        (OPENAI_INPUT, OPENAI_OUTPUT)
    );
    let body = &fake.seen()[0].body;
    assert_eq!(body["stream_options"]["include_usage"], json!(true));
}

#[tokio::test]
async fn an_error_event_before_the_first_token_is_retried_invisibly() {
    for provider in ["anthropic", "openai"] {
        let fake = FakeProvider::start().await;
        let config = if provider == "anthropic" {
            anthropic(&fake)
        } else {
            openai(&fake)
        };
        fake.script([Reply::StreamErrorFirst]);
        let mut app = spawn_with(Some(config)).await;
        let events = app.generate_stream(generate("a greeting")).await;
        assert!(
            matches!(events.last(), Some(GenEvent::Done(_))),
            "{provider}: {events:?}"
        );
        assert_eq!(fake.calls(), 2, "{provider}");
    }
}

#[tokio::test]
async fn a_failure_mid_stream_ends_with_an_error_event_carrying_usage_so_far() {
    let fake = FakeProvider::start().await;
    fake.script([Reply::StreamErrorAfter { tokens: 2 }]);
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let events = app.generate_stream(generate("a greeting")).await;
    assert_eq!(events.len(), 3, "two deltas then the error: {events:?}");
    let GenEvent::Error(error) = &events[2] else {
        panic!("error event last: {events:?}");
    };
    assert_eq!(error.kind, "overloaded");
    assert_eq!(error.input_tokens, ANTHROPIC_INPUT);
    assert!(!error.partial_text.is_empty());
    assert_eq!(fake.calls(), 1, "no retry once tokens were sent");
    let day = app.usage(USER).await.day.unwrap();
    assert_eq!(
        day.input_tokens, ANTHROPIC_INPUT,
        "billed tokens are recorded"
    );
}

#[tokio::test]
async fn text_read_together_with_an_error_event_still_reaches_the_client() {
    let fake = FakeProvider::start().await;
    // Whole events of text and the error in one read: the text came first and is the caller's.
    fake.script([Reply::StreamErrorInOneWrite { tokens: 3 }]);
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let events = app.generate_stream(generate("a greeting")).await;
    let deltas = events
        .iter()
        .filter(|e| matches!(e, GenEvent::Delta(_)))
        .count();
    assert!(
        deltas >= 1,
        "the text before the error is delivered: {events:?}"
    );
    let Some(GenEvent::Error(error)) = events.last() else {
        panic!("error event last: {events:?}");
    };
    assert_eq!(error.kind, "overloaded");
    assert!(!error.partial_text.is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_provider_request() {
    let fake = FakeProvider::start().await;
    fake.script([Reply::StreamHang { tokens: 1 }]);
    let mut app = spawn_with(Some(anthropic(&fake))).await;
    let mut stream = app
        .client
        .generate_stream(req(generate("a greeting")))
        .await
        .expect("stream")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("message")
        .expect("first event");
    assert!(matches!(first.event, Some(GenEvent::Delta(_))));
    assert!(
        !fake.wait_for_hangup(Duration::from_millis(200)).await,
        "still streaming"
    );
    drop(stream);
    assert!(
        fake.wait_for_hangup(Duration::from_secs(10)).await,
        "the provider saw the connection close"
    );
    // The input tokens billed before the hang-up are still recorded, in the background.
    let mut recorded = 0;
    for _ in 0..50 {
        recorded = app.usage(USER).await.day.unwrap().input_tokens;
        if recorded > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recorded, ANTHROPIC_INPUT);
}
