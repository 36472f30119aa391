//! Programs that behave: each language, stdin and arguments, several files, errors, streaming.

use autocrea_proto::sandbox::v1::{ExecuteRequest, ListLanguagesRequest, execute_event};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::Code;

use crate::helpers::{USER, authed, code, file, spawn_app, test_config};

#[tokio::test]
async fn hello_world_in_each_language() {
    let app = spawn_app(test_config("hello")).await;
    for (language, program) in [
        ("javascript", "console.log('hello from ' + 'node')"),
        ("python", "print('hello from ' + 'python')"),
        ("bash", "echo \"hello from $0\" | sed 's/main.sh/bash/'"),
    ] {
        let result = app.execute(code(language, program)).await;
        let expected = match language {
            "javascript" => "hello from node\n",
            "python" => "hello from python\n",
            _ => "hello from bash\n",
        };
        assert_eq!(result.stdout, expected, "{language}: {result:?}");
        assert_eq!(result.stderr, "", "{language}");
        assert_eq!(result.exit_code, 0);
        assert_eq!(result.signal, None);
        assert!(!result.timed_out && !result.oom_killed && !result.truncated);
        assert_eq!(result.language, language);
        assert!(
            result
                .version
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit()),
            "{result:?}"
        );
        assert!(result.cpu_time_ms.is_some(), "cpu time measured");
        assert!(
            result.peak_memory_bytes.unwrap_or(0) > 0,
            "peak memory measured"
        );
        let limits = result.limits.expect("limits echoed");
        assert_eq!(limits.timeout_ms, 10_000);
        assert_eq!(limits.memory_bytes, 512 * 1024 * 1024);
        assert_eq!(limits.cpu_millis, 500);
        assert_eq!(limits.output_bytes, 1024 * 1024);
        assert!(!limits.network);
    }
    app.stop().await;
}

#[tokio::test]
async fn list_languages_reports_versions() {
    let app = spawn_app(test_config("languages")).await;
    let languages = app
        .client
        .clone()
        .list_languages(authed(ListLanguagesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .languages;
    let names: Vec<_> = languages.iter().map(|l| l.language.as_str()).collect();
    assert_eq!(names, ["javascript", "python", "bash"]);
    for l in &languages {
        assert!(
            l.version.split('.').count() >= 2 && l.version != "unknown",
            "{l:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn stdin_and_args_reach_the_program_as_data() {
    let app = spawn_app(test_config("stdin-args")).await;
    let result = app
        .execute(ExecuteRequest {
            stdin: "line one\nline two\n".into(),
            args: vec![
                "a b".into(),
                "$(id)".into(),
                "; rm -rf /".into(),
                "'\"".into(),
            ],
            ..code(
                "python",
                "import sys\nprint(sys.argv[1:])\nprint(sys.stdin.read().upper(), end='')",
            )
        })
        .await;
    assert_eq!(
        result.stdout,
        "['a b', '$(id)', '; rm -rf /', '\\'\"']\nLINE ONE\nLINE TWO\n"
    );
    let result = app
        .execute(ExecuteRequest {
            stdin: "42".into(),
            args: vec!["x".into()],
            ..code("bash", "read n; echo \"$((n + 1)) $1 $#\"")
        })
        .await;
    assert_eq!(result.stdout, "43 x 1\n");
    // No stdin: the program reads end of file at once instead of waiting.
    let result = app
        .execute(code("javascript", "process.stdin.on('data', d => console.log('data', d.length)); process.stdin.on('end', () => console.log('eof'))"))
        .await;
    assert_eq!(result.stdout, "eof\n");
    app.stop().await;
}

#[tokio::test]
async fn several_files_with_an_entry_point() {
    let app = spawn_app(test_config("files")).await;
    let result = app
        .execute(ExecuteRequest {
            language: "js".into(),
            files: vec![
                file("lib/greet.js", "module.exports = n => `hi ${n}`;"),
                file(
                    "app.js",
                    "const g = require('./lib/greet'); console.log(g('there'));",
                ),
            ],
            entry: "app.js".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(result.stdout, "hi there\n", "{result:?}");
    let result = app
        .execute(ExecuteRequest {
            language: "python".into(),
            files: vec![
                file("util/__init__.py", ""),
                file("util/calc.py", "def double(x):\n    return 2 * x\n"),
                file("main.py", "from util.calc import double\nprint(double(21))"),
            ],
            ..Default::default()
        })
        .await;
    assert_eq!(result.stdout, "42\n", "{result:?}");
    app.stop().await;
}

/// The engine reads a container's stdout and stderr from two pipes, so the program's last words
/// on stderr can arrive after the supervisor's trailer on stdout; they belong to the result all
/// the same.
#[tokio::test]
async fn the_last_stderr_before_exit_is_kept() {
    let app = spawn_app(test_config("last-stderr")).await;
    for _ in 0..8 {
        let result = app
            .execute(code(
                "python",
                "import sys\nprint('out')\nsys.stderr.write('x' * 3000 + '\\nlast words\\n')\nsys.exit(4)",
            ))
            .await;
        assert_eq!(result.exit_code, 4, "{result:?}");
        assert!(result.stderr.ends_with("last words\n"), "{result:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn runtime_errors_give_a_non_zero_exit_and_stderr() {
    let app = spawn_app(test_config("errors")).await;
    let result = app.execute(code("python", "print('before')\n1/0")).await;
    assert_eq!(result.exit_code, 1);
    assert_eq!(result.stdout, "before\n");
    assert!(result.stderr.contains("ZeroDivisionError"), "{result:?}");
    let result = app.execute(code("javascript", "null.x")).await;
    assert_eq!(result.exit_code, 1);
    assert!(result.stderr.contains("TypeError"), "{result:?}");
    let result = app.execute(code("bash", "echo oops >&2; exit 3")).await;
    assert_eq!((result.exit_code, result.stderr.as_str()), (3, "oops\n"));
    let result = app.execute(code("javascript", "syntax error here")).await;
    assert_eq!(result.exit_code, 1);
    assert!(result.stderr.contains("SyntaxError"), "{result:?}");
    app.stop().await;
}

#[tokio::test]
async fn streaming_sends_output_as_it_comes_then_the_result() {
    let app = spawn_app(test_config("stream")).await;
    let mut events = app
        .client
        .clone()
        .execute_stream(authed(code(
            "python",
            "import sys, time\nfor i in range(3):\n    print(i)\n    time.sleep(0.3)\nprint('err', file=sys.stderr)",
        )))
        .await
        .unwrap()
        .into_inner();
    let mut stdout_chunks = Vec::new();
    let mut stderr = String::new();
    let mut result = None;
    let mut first_chunk_at = None;
    let mut result_at = None;
    while let Some(event) = events.next().await {
        match event.unwrap().event.unwrap() {
            execute_event::Event::Stdout(text) => {
                assert!(result.is_none(), "output after the result");
                first_chunk_at.get_or_insert_with(Instant::now);
                stdout_chunks.push(text);
            }
            execute_event::Event::Stderr(text) => stderr.push_str(&text),
            execute_event::Event::Result(r) => {
                result_at = Some(Instant::now());
                result = Some(r);
            }
        }
    }
    assert_eq!(stdout_chunks.concat(), "0\n1\n2\n");
    // The first line arrived while the program was still sleeping, not with the result.
    let early = result_at.unwrap() - first_chunk_at.unwrap();
    assert!(
        early >= Duration::from_millis(500),
        "first chunk only {early:?} early"
    );
    assert!(stdout_chunks.len() >= 3, "{stdout_chunks:?}");
    assert_eq!(stderr, "err\n");
    let result = result.expect("final result");
    assert_eq!((result.stdout.as_str(), result.exit_code), ("0\n1\n2\n", 0));
    assert!(result.duration_ms >= 900, "{result:?}");
    app.stop().await;
}

#[tokio::test]
async fn every_call_needs_a_caller() {
    let app = spawn_app(test_config("caller")).await;
    let status = app
        .client
        .clone()
        .execute(code("python", "print(1)"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app
        .client
        .clone()
        .list_languages(ListLanguagesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // A forged x-user-id, or an assertion expired, signed by another key or minted for another
    // service: refused before any container starts.
    let audience = service_runtime::identity::audience::SANDBOX;
    let forged =
        service_runtime::testing::forged_requests(audience, USER, code("python", "print(1)"));
    for (what, request) in forged {
        let status = app.client.clone().execute(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    for (what, request) in
        service_runtime::testing::forged_requests(audience, USER, ListLanguagesRequest {})
    {
        let status = app
            .client
            .clone()
            .list_languages(request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    // The gateway's call goes through.
    app.client
        .clone()
        .list_languages(authed(ListLanguagesRequest {}))
        .await
        .expect("a signed call is answered");
    app.stop().await;
}
