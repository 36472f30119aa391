//! A real browser against the real gateway: headless Chromium (Debian's `chromium`) loads a page
//! from a second loopback origin that is on the gateway's allow list; the page creates and lists
//! projects with `fetch` and a bearer token, reads `x-request-id`, and reads an AI event stream
//! with a streaming `fetch` reader. The same page from an origin not on the list gets a CORS
//! error and creates nothing, and its cookie-authenticated POST (which a browser sends without a
//! preflight) is refused 403 by the CSRF check. The page reports what it saw by POSTing it to
//! the server that served it.

use std::process::Stdio;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use ai_service::ProviderConfig;
use serde_json::Value;
use service_runtime::testing::{TempDir, fresh_sqlite_url};
use tokio::sync::mpsc;

use crate::ai::fake_provider::FakeProvider;
use crate::helpers::*;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>AutoCrea browser test</title></head>
<body><p id="status">running</p>
<script>
const q = new URLSearchParams(location.search);
const api = q.get('api'), token = q.get('token');
const out = {origin: location.origin};
async function main() {
  const auth = {'Authorization': 'Bearer ' + token};
  try {
    let r = await fetch(api + '/api/projects', {
      method: 'POST',
      headers: {...auth, 'Content-Type': 'application/json'},
      body: JSON.stringify({name: 'from-the-browser', language: 'python'}),
    });
    out.createStatus = r.status;
    out.created = await r.json();
    out.createRequestId = r.headers.get('x-request-id');
    out.createRemaining = r.headers.get('ratelimit-remaining');
    out.createLocation = r.headers.get('location');
    r = await fetch(api + '/api/projects', {headers: auth});
    out.listStatus = r.status;
    out.listRequestId = r.headers.get('x-request-id');
    out.list = await r.json();
    r = await fetch(api + '/api/ai/generate', {
      method: 'POST',
      headers: {...auth, 'Content-Type': 'application/json', 'Accept': 'text/event-stream'},
      body: JSON.stringify({prompt: 'print hello in python', language: 'python'}),
    });
    out.streamStatus = r.status;
    out.streamType = r.headers.get('content-type');
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    out.streamReads = 0;
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      out.streamReads++;
      text += decoder.decode(value, {stream: true});
    }
    out.events = [...text.matchAll(/^event: (\w+)$/gm)].map(m => m[1]);
    const done = text.split('\n\n').find(e => e.startsWith('event: done'));
    out.done = done ? JSON.parse(done.split('\ndata: ')[1]) : null;
  } catch (e) {
    out.error = e.name + ': ' + e.message;
  }
  // A cross-site request forgery attempt with the session cookie: a "simple" POST, which the
  // browser sends without a preflight and whose answer the page cannot read.
  document.cookie = '__session=' + token + '; path=/';
  try {
    await fetch(api + '/api/projects', {
      method: 'POST', mode: 'no-cors', credentials: 'include',
      headers: {'Content-Type': 'text/plain'},
      body: JSON.stringify({name: 'forged-with-a-cookie', language: 'python'}),
    });
    out.forgerySent = true;
  } catch (e) {
    out.forgeryError = String(e);
  }
  await fetch('/results', {method: 'POST', body: JSON.stringify(out)});
  document.getElementById('status').textContent = 'done';
}
main();
</script></body></html>"#;

/// A page server on loopback: serves [`PAGE`] and hands what the page POSTs to `/results` to the
/// test.
struct PageServer {
    _server: Server,
    origin: String,
    results: mpsc::UnboundedReceiver<Value>,
}

impl PageServer {
    fn start() -> Self {
        let (tx, results) = mpsc::unbounded_channel::<Value>();
        let server = serve_app(move |app| {
            let tx = tx.clone();
            app.route(
                "/page.html",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .body(PAGE)
                }),
            )
            .route(
                "/results",
                web::post().to(move |body: web::Bytes| {
                    let tx = tx.clone();
                    async move {
                        let value = serde_json::from_slice(&body)
                            .unwrap_or_else(|e| Value::String(format!("{e}")));
                        let _ = tx.send(value);
                        HttpResponse::NoContent().finish()
                    }
                }),
            )
            .route(
                "/favicon.ico",
                web::get().to(|| async { HttpResponse::NoContent().finish() }),
            );
        });
        Self {
            origin: format!("http://{}", server.addr),
            _server: server,
            results,
        }
    }

    /// Opens the page in headless Chromium and returns what it reported.
    async fn visit(&mut self, api: &str, token: &str) -> Value {
        let profile = TempDir::new();
        let url = format!("{}/page.html?api={api}&token={token}", self.origin);
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let mut browser = tokio::process::Command::new(&binary)
            .args([
                "--headless",
                // Root in a container: Chromium's own sandbox needs user namespaces it lacks.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
            ])
            .arg(format!("--user-data-dir={}", profile.path.display()))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): the browser test needs Chromium \
                     (`bash deploy/test.sh` installs Debian's `chromium`; or set CHROMIUM)"
                )
            });
        let report = tokio::time::timeout(Duration::from_secs(90), self.results.recv())
            .await
            .expect("the page reported nothing within 90 s")
            .expect("the page server stopped");
        let _ = browser.kill().await;
        report
    }
}

/// project-service, ai-service with the fake provider, and a gateway allowing `origins`.
struct BrowserStack {
    gateway: Gateway,
    _project: ProjectService,
    _ai: Server,
    _fake: FakeProvider,
    _data: TempDir,
}

impl BrowserStack {
    async fn start(origins: Vec<String>) -> Self {
        let project = ProjectService::start(Db::Sqlite).await;
        let fake = FakeProvider::start().await;
        let (database_url, data) = fresh_sqlite_url();
        let mut ai_config = ai_service::Config::new(database_url);
        ai_config.caller_keys = Some(service_runtime::testing::caller_keys());
        ai_config.provider = Some(ProviderConfig::anthropic(
            fake.url(),
            crate::ai::fake_provider::KEY,
        ));
        let ai = start_ai_service(ai_config);
        let mut config = gateway_config(&project.url());
        config.services.ai = format!("http://{}", ai.addr);
        config.limits = generous_limits();
        config.edge.allowed_origins = origins;
        let gateway = Gateway::start(config).await;
        Self {
            gateway,
            _project: project,
            _ai: ai,
            _fake: fake,
            _data: data,
        }
    }

    async fn project_names(&self, user: &str) -> Vec<String> {
        let list: Value = self
            .gateway
            .get("/api/projects", user)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Answers the gateway gave POST /api/projects with `status`, from its metrics.
    async fn project_posts_answered(&self, status: u16) -> u64 {
        let status = format!("status=\"{status}\"");
        let labels = [
            "method=\"POST\"",
            "route=\"/api/projects\"",
            status.as_str(),
        ];
        self.gateway.metric("http_requests_total", &labels).await as u64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_uses_the_api_with_fetch_and_reads_a_stream() {
    let mut page = PageServer::start();
    let stack = BrowserStack::start(vec![page.origin.clone()]).await;
    let user = unique_user("browser");
    let report = page.visit(&stack.gateway.base, &token(&user)).await;

    assert!(report.get("error").is_none(), "{report:#}");
    assert_eq!(report["createStatus"], 201, "{report:#}");
    assert_eq!(report["created"]["name"], "from-the-browser");
    // Exposed headers are readable by the page.
    let request_id = report["createRequestId"].as_str().unwrap_or_default();
    assert_eq!(request_id.len(), 32, "{report:#}");
    assert!(report["createRemaining"].as_str().is_some(), "{report:#}");
    assert!(
        report["createLocation"]
            .as_str()
            .is_some_and(|l| l.contains(report["created"]["id"].as_str().unwrap())),
        "{report:#}"
    );
    assert_eq!(report["listStatus"], 200);
    assert!(report["listRequestId"].as_str().is_some());
    assert_eq!(report["list"]["items"][0]["name"], "from-the-browser");
    // The event stream, read as it arrived.
    assert_eq!(report["streamStatus"], 200, "{report:#}");
    assert_eq!(report["streamType"], "text/event-stream");
    let events: Vec<&str> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(events.contains(&"delta"), "{events:?}");
    assert_eq!(events.last(), Some(&"done"), "{events:?}");
    assert!(
        report["done"]["tokensUsed"].as_u64().unwrap() > 0,
        "{report:#}"
    );

    // Its cookie-authenticated POST came from an allowed origin, so the CSRF check let it
    // through to the handler, which wants JSON: 415, nothing created.
    assert_eq!(report["forgerySent"], true, "{report:#}");
    assert_eq!(stack.project_posts_answered(415).await, 1);
    assert_eq!(stack.project_names(&user).await, vec!["from-the-browser"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_is_blocked_and_its_cookie_post_is_refused() {
    let mut page = PageServer::start();
    // The allow list names another origin only.
    let stack = BrowserStack::start(vec!["http://127.0.0.1:1".into()]).await;
    let user = unique_user("foreign");
    let before = stack.project_posts_answered(403).await;
    let report = page.visit(&stack.gateway.base, &token(&user)).await;

    // fetch() fails with the browser's CORS error: the preflight of the JSON POST was refused.
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("TypeError"), "{report:#}");
    assert!(report.get("createStatus").is_none(), "{report:#}");
    // The cookie-authenticated POST needs no preflight, so the browser sent it; the CSRF check
    // answered 403 before anything else looked at it.
    assert_eq!(report["forgerySent"], true, "{report:#}");
    assert_eq!(stack.project_posts_answered(403).await - before, 1);
    assert_eq!(stack.project_names(&user).await, Vec::<String>::new());
}
