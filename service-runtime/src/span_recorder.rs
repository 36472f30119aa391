//! A subscriber for tests that keeps every span opened on the current thread, with its fields as
//! text, to check what a piece of code records without an OpenTelemetry collector.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// A span as recorded: its name and its fields (recorded later ones included).
#[derive(Debug, Clone)]
pub struct RecordedSpan {
    id: u64,
    /// The `tracing` span name (`db.query`, `http.client`).
    pub name: &'static str,
    /// Field values rendered as text (strings as they are, others with `Debug`).
    pub fields: HashMap<String, String>,
}

/// Records spans while the guard [`SpanRecorder::install`] returns is alive on this thread
/// (use a current-thread runtime in async tests).
#[derive(Debug, Clone, Default)]
pub struct SpanRecorder(Arc<Mutex<Vec<RecordedSpan>>>);

impl SpanRecorder {
    /// Makes a recorder the current thread's default subscriber until the guard drops.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let recorder = Self::default();
        let guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
        (recorder, guard)
    }

    /// The spans named `name`, in the order they were opened.
    pub fn spans(&self, name: &str) -> Vec<RecordedSpan> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanRecorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(RecordedSpan {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}
