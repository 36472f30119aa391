//! Server-sent events: content negotiation and event framing shared by the streaming routes.

use actix_web::HttpRequest;
use actix_web::http::header;
use bytes::Bytes;
use serde::Serialize;

/// Whether the client asked for an event stream (`Accept: text/event-stream`).
pub fn wants_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// One event. JSON has no raw newlines, so `data` is always a single line.
pub fn event(name: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}
