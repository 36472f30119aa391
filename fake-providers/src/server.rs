//! What the three fake providers share: an actix-web server on its own thread (bound to
//! 127.0.0.1:0 for a test, or to a given listener), a record of every request received, scripted
//! failures, and a "hold" switch that keeps deployments in progress until a test releases them.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use sha1::{Digest, Sha1};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A scripted answer: (method, path prefix, status, extra header).
pub type ScriptedFailure = (String, String, u16, Option<(String, String)>);

/// Behaviour every fake shares.
#[derive(Debug, Default)]
pub struct Script {
    /// Requests received, in order.
    pub requests: Vec<Recorded>,
    /// (method, path prefix, status, extra header) answered instead of the real handler, once
    /// each, in order.
    pub failures: VecDeque<ScriptedFailure>,
    /// Keep deployments in progress while set.
    pub hold: bool,
    /// Answer matching requests only after this delay (method, path prefix).
    pub slow: Option<(String, String, Duration)>,
}

/// A running fake; the state is shared with its handler.
pub struct FakeServer<S> {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<S>>,
    pub script: Arc<Mutex<Script>>,
    handle: ServerHandle,
}

impl<S> Drop for FakeServer<S> {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stopping waits for the server's own runtime; do it off the caller's runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(handle.stop(false));
        });
    }
}

/// The handler of a fake: request, body, state → response.
pub type Handler<S> = fn(&HttpRequest, &Bytes, &mut S, &Script) -> HttpResponse;

impl<S: Send + 'static> FakeServer<S> {
    /// Starts a fake on a free loopback port whose every request goes to `handler`.
    pub fn start(state: S, handler: Handler<S>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake");
        Self::start_on(listener, state, handler)
    }

    /// Starts a fake on `listener` whose every request goes to `handler`.
    pub fn start_on(listener: std::net::TcpListener, state: S, handler: Handler<S>) -> Self {
        let state = Arc::new(Mutex::new(state));
        let script = Arc::new(Mutex::new(Script::default()));
        let addr = listener.local_addr().expect("fake addr");
        let (tx, rx) = std::sync::mpsc::channel();
        let (state2, script2) = (state.clone(), script.clone());
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let state = state2.clone();
                    let script = script2.clone();
                    App::new().default_service(web::to(move |req: HttpRequest, body: Bytes| {
                        let state = state.clone();
                        let script = script.clone();
                        async move { dispatch(req, body, state, script, handler).await }
                    }))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            });
        });
        let handle = rx.recv().expect("fake server started");
        Self {
            addr,
            state,
            script,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.script.lock().unwrap().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.script.lock().unwrap().requests.clear();
    }

    /// The requests with `method` whose path starts with `prefix`, in order.
    pub fn matching(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// How many requests have `method` and a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.matching(method, prefix).len()
    }

    /// The next request matching (method, path prefix) is answered with `status`.
    pub fn fail_next(&self, method: &str, prefix: &str, status: u16) {
        self.script.lock().unwrap().failures.push_back((
            method.to_string(),
            prefix.to_string(),
            status,
            None,
        ));
    }

    /// The next matching request is answered 429 with a reset header.
    pub fn rate_limit_next(&self, method: &str, prefix: &str, header: &str, value: &str) {
        self.script.lock().unwrap().failures.push_back((
            method.to_string(),
            prefix.to_string(),
            429,
            Some((header.to_string(), value.to_string())),
        ));
    }

    /// Keep deployments in progress (true) or let them finish (false).
    pub fn hold(&self, hold: bool) {
        self.script.lock().unwrap().hold = hold;
    }

    /// Answer matching requests only after `delay`.
    pub fn slow(&self, method: &str, prefix: &str, delay: Duration) {
        self.script.lock().unwrap().slow = Some((method.to_string(), prefix.to_string(), delay));
    }
}

async fn dispatch<S>(
    req: HttpRequest,
    body: Bytes,
    state: Arc<Mutex<S>>,
    script: Arc<Mutex<Script>>,
    handler: Handler<S>,
) -> HttpResponse {
    let method = req.method().to_string();
    let path = req.path().to_string();
    let delay = {
        let mut script = script.lock().unwrap();
        script.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: req.query_string().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: body.clone(),
        });
        let position = script
            .failures
            .iter()
            .position(|(m, p, _, _)| *m == method && path.starts_with(p.as_str()));
        if let Some((_, _, status, header)) = position.and_then(|i| script.failures.remove(i)) {
            let mut response =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
            if let Some((name, value)) = header {
                response.insert_header((name, value));
            }
            return response.json(serde_json::json!({
                "error": {"code": "scripted_failure", "message": format!("scripted {status}")}
            }));
        }
        script
            .slow
            .as_ref()
            .filter(|(m, p, _)| *m == method && path.starts_with(p.as_str()))
            .map(|(_, _, d)| *d)
    };
    if let Some(delay) = delay {
        actix_web::rt::time::sleep(delay).await;
    }
    let script = script.lock().unwrap();
    let mut state = state.lock().unwrap();
    handler(&req, &body, &mut state, &script)
}

/// Lower-case hex SHA-1.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

/// The bearer token of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

/// An account of a fake provider; a request acts in the account its token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
}

/// Tokens → accounts: every fake knows two accounts out of the box (its `TOKEN` and
/// `OTHER_TOKEN`), and tests may add more.
#[derive(Debug, Clone, Default)]
pub struct Accounts(pub HashMap<String, Account>);

impl Accounts {
    /// Two accounts: `first` → `{prefix}1` and `second` → `{prefix}2`.
    pub fn two(first: &str, second: &str, prefix: &str) -> Self {
        let mut accounts = Self::default();
        accounts.add(first, &format!("{prefix}1"), "Test Account One");
        accounts.add(second, &format!("{prefix}2"), "Test Account Two");
        accounts
    }

    /// Adds (or replaces) the account `token` opens.
    pub fn add(&mut self, token: &str, id: &str, name: &str) {
        self.0.insert(
            token.to_string(),
            Account {
                id: id.to_string(),
                name: name.to_string(),
            },
        );
    }

    /// The account of the request's bearer token.
    pub fn of(&self, req: &HttpRequest) -> Option<Account> {
        bearer(req).and_then(|token| self.0.get(&token).cloned())
    }
}

/// A fresh id with a prefix.
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}
