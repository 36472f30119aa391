//! `generate` and `chat` as server-sent events, through the one SSE helper (`crate::sse`).

use super::*;

/// What one gRPC stream event becomes.
pub(super) enum Frame {
    /// A `delta` event.
    Delta(String),
    /// The final `done` event, already rendered.
    Done(Bytes),
    /// The final `error` event.
    Error(pb::StreamError),
}

/// What one outcome of an AI gRPC stream sends: `delta` events as tokens arrive, then one
/// `done` or `error`. A stream that ends or breaks without its final event (ai-service went
/// away) ends with an `interrupted` error rather than leave the client guessing whether the
/// answer is complete.
pub(super) fn ai_step<T>(
    frame: fn(T) -> Option<Frame>,
) -> impl FnMut(Result<Option<T>, tonic::Status>) -> sse::Step {
    move |outcome| match outcome {
        Ok(Some(message)) => match frame(message) {
            Some(Frame::Delta(text)) => {
                sse::Step::Continue(Some(sse::event("delta", &DeltaEvent { text })))
            }
            Some(Frame::Done(bytes)) => sse::Step::Finish(Some(bytes)),
            Some(Frame::Error(e)) => {
                sse::Step::Finish(Some(sse::event("error", &StreamErrorEvent::from(e))))
            }
            None => sse::Step::Continue(None),
        },
        Ok(None) => sse::Step::Finish(Some(interrupted())),
        Err(status) => {
            tracing::warn!(code = ?status.code(), grpc_message = status.message(), "AI stream broke off");
            sse::Step::Finish(Some(interrupted()))
        }
    }
}

pub(super) fn interrupted() -> Bytes {
    sse::event(
        "error",
        &StreamErrorEvent {
            kind: "interrupted".into(),
            message: "the AI stream ended before its final event; try again".into(),
            tokens_used: 0,
            input_tokens: 0,
            output_tokens: 0,
            partial_text: String::new(),
        },
    )
}

/// Opens a stream and answers with its events, or with a problem when it fails before its
/// first token. The caller's stream slot is taken before the call; closing the connection, or
/// not reading for the write timeout, drops the gRPC stream, which resets it and makes
/// ai-service cancel the provider call.
pub(super) async fn streamed<T: Send + 'static, C>(
    state: &AppState,
    caller: &Caller,
    timing: &Timing,
    call: impl FnOnce() -> C,
    frame: fn(T) -> Option<Frame>,
) -> HttpResponse
where
    C: Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
{
    let slot = match state.streams.open(caller) {
        Ok(slot) => slot,
        Err(error) => return timing.error(&error),
    };
    match call().await {
        Ok(response) => {
            let mut builder = HttpResponse::Ok();
            timing.apply(&mut builder, response.metadata());
            slot.respond(builder, response.into_inner(), ai_step(frame))
        }
        Err(status) => timing.error(&ai_error(&status)),
    }
}

pub(super) fn generate_frame(e: pb::GenerateStreamEvent) -> Option<Frame> {
    use pb::generate_stream_event::Event;
    Some(match e.event? {
        Event::Delta(d) => Frame::Delta(d.text),
        Event::Done(done) => Frame::Done(sse::event("done", &GenerateResult::from(done))),
        Event::Error(error) => Frame::Error(error),
    })
}

pub(super) fn chat_frame(e: pb::ChatStreamEvent) -> Option<Frame> {
    use pb::chat_stream_event::Event;
    Some(match e.event? {
        Event::Delta(d) => Frame::Delta(d.text),
        Event::Done(done) => Frame::Done(sse::event("done", &ChatResult::from(done))),
        Event::Error(error) => Frame::Error(error),
    })
}
