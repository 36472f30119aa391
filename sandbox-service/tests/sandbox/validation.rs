//! Bad requests: INVALID_ARGUMENT with field violations that say what to fix.

use autocrea_proto::sandbox::v1::ExecuteRequest;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{authed, code, file, spawn_app, test_config};

/// The (field, description) pairs of an INVALID_ARGUMENT answer.
async fn violations(
    app: &crate::helpers::TestApp,
    request: ExecuteRequest,
) -> Vec<(String, String)> {
    let status = app
        .client
        .clone()
        .execute(authed(request))
        .await
        .expect_err("request accepted");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("bad request details")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

fn only(violations: &[(String, String)], field: &str, needle: &str) {
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].0, field, "{violations:?}");
    assert!(violations[0].1.contains(needle), "{violations:?}");
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_with_field_violations() {
    let app = spawn_app(test_config("validation")).await;
    let v = violations(&app, code("cobol", "x")).await;
    only(&v, "language", "supported: javascript, python, bash");
    let v = violations(&app, code("", "x")).await;
    only(&v, "language", "required");
    let v = violations(&app, code("python", &"x".repeat(512 * 1024 + 1))).await;
    only(&v, "code", "at most 524288 bytes");
    let v = violations(
        &app,
        ExecuteRequest {
            language: "python".into(),
            files: (0..33).map(|i| file(&format!("f{i}.py"), "")).collect(),
            entry: "f0.py".into(),
            ..Default::default()
        },
    )
    .await;
    only(&v, "files", "too many files: 33 (at most 32)");
    let v = violations(
        &app,
        ExecuteRequest {
            timeout_ms: Some(-5),
            ..code("python", "x")
        },
    )
    .await;
    only(&v, "timeoutMs", "positive");
    let v = violations(
        &app,
        ExecuteRequest {
            timeout_ms: Some(i64::MAX),
            ..code("python", "x")
        },
    )
    .await;
    only(&v, "timeoutMs", "at most 60000");
    let v = violations(
        &app,
        ExecuteRequest {
            language: "python".into(),
            files: vec![file("../escape.py", "x"), file("ok.py", "")],
            entry: "ok.py".into(),
            ..Default::default()
        },
    )
    .await;
    only(&v, "files[0].name", "relative path");
    let v = violations(
        &app,
        ExecuteRequest {
            language: "python".into(),
            files: vec![file("a.py", ""), file("b.py", "")],
            ..Default::default()
        },
    )
    .await;
    only(&v, "entry", "main.py");
    let v = violations(
        &app,
        ExecuteRequest {
            language: "python".into(),
            ..Default::default()
        },
    )
    .await;
    only(&v, "files", "missing");
    let v = violations(
        &app,
        ExecuteRequest {
            args: vec!["a\0b".into()],
            ..code("python", "x")
        },
    )
    .await;
    only(&v, "args[0]", "NUL");
    // Every wrong field is reported at once.
    let v = violations(
        &app,
        ExecuteRequest {
            timeout_ms: Some(-1),
            ..code("cobol", "x")
        },
    )
    .await;
    let fields: Vec<_> = v.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["language", "timeoutMs"]);
    app.stop().await;
}
