//! Tracing: every Docker engine call of a run is a span under the run's gRPC request span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::helpers::{code, spawn_app, test_config};

/// Records each span's name and parent (explicit, or the span entered on this thread).
#[derive(Default)]
struct SpanTree {
    spans: Mutex<HashMap<u64, (&'static str, Option<u64>)>>,
    stack: Mutex<Vec<u64>>,
    next: std::sync::atomic::AtomicU64,
}

impl SpanTree {
    /// The names from `id`'s parent up to the root.
    fn ancestors(&self, mut id: u64) -> Vec<&'static str> {
        let spans = self.spans.lock().unwrap();
        let mut out = Vec::new();
        while let Some(&(_, Some(parent))) = spans.get(&id) {
            out.push(spans[&parent].0);
            id = parent;
        }
        out
    }

    fn named(&self, name: &str) -> Vec<u64> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|(_, (n, _))| *n == name)
            .map(|(&id, _)| id)
            .collect()
    }
}

/// The subscriber, sharing its tree with the test.
struct Recorder(Arc<SpanTree>);

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let tree = &self.0;
        let id = tree.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let parent = if let Some(parent) = attrs.parent() {
            Some(parent.into_u64())
        } else if attrs.is_contextual() {
            tree.stack.lock().unwrap().last().copied()
        } else {
            None
        };
        tree.spans
            .lock()
            .unwrap()
            .insert(id, (attrs.metadata().name(), parent));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, span: &Id) {
        self.0.stack.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut stack = self.0.stack.lock().unwrap();
        if let Some(at) = stack.iter().rposition(|&id| id == span.into_u64()) {
            stack.remove(at);
        }
    }
}

// One thread: every task of the test server runs where the scoped subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn docker_calls_are_spans_under_the_request() {
    let tree = Arc::new(SpanTree::default());
    let _guard = tracing::subscriber::set_default(Recorder(tree.clone()));
    let app = spawn_app(test_config("spans")).await;
    let result = app.execute(code("python", "print('traced')")).await;
    assert_eq!(result.stdout, "traced\n");
    app.stop().await;

    for name in [
        "docker.create",
        "docker.attach",
        "docker.start",
        "docker.remove",
    ] {
        let ids = tree.named(name);
        assert!(!ids.is_empty(), "no {name} span");
        let under_request = ids.iter().any(|&id| {
            let up = tree.ancestors(id);
            up.first() == Some(&"sandbox.run") && up.contains(&"grpc.server")
        });
        assert!(
            under_request,
            "{name} is not a child of sandbox.run under grpc.server: {:?}",
            ids.iter().map(|&id| tree.ancestors(id)).collect::<Vec<_>>()
        );
    }
}
