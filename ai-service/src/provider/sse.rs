//! A server-sent events decoder: bytes in, `(event, data)` pairs out, whatever the chunking.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, when present.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Incremental decoder; feed it chunks as they arrive.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no line break: a long line arriving in many chunks
    /// is scanned once, not once per chunk.
    scanned: usize,
    current: SseEvent,
    has_data: bool,
}

impl SseDecoder {
    /// Adds `chunk` and returns every event it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(pos) = self.buffer[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos;
            let line = &self.buffer[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            from = start;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        events
    }

    /// Ends the input: an event not followed by a blank line is still delivered.
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.scanned = 0;
        if !self.buffer.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned();
            if let Some(event) = self.line(line.trim_end_matches('\r')) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.current.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.current);
        let had = std::mem::replace(&mut self.has_data, false);
        had.then_some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_across_chunk_boundaries() {
        let mut d = SseDecoder::default();
        let mut events = d.push(b"event: ping\r\ndata: {\"type\"");
        assert!(events.is_empty());
        events.extend(d.push(b":\"ping\"}\r\n\r\n: comment\ndata: a\ndata: b\n\ndata: [DONE]"));
        events.extend(d.finish());
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{\"type\":\"ping\"}".into()
                },
                SseEvent {
                    event: None,
                    data: "a\nb".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn a_long_line_in_many_chunks_is_one_event_and_the_decoder_goes_on() {
        let text = "x".repeat(300_000);
        let wire = format!("event: delta\r\ndata: {text}\r\n\r\ndata: next\n\n");
        let mut d = SseDecoder::default();
        let mut events = Vec::new();
        // Odd-sized chunks, so that boundaries fall inside the line, between `\r` and `\n`
        // and inside the blank line.
        for chunk in wire.as_bytes().chunks(997) {
            events.extend(d.push(chunk));
        }
        events.extend(d.finish());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.as_deref(), Some("delta"));
        assert_eq!(events[0].data, text);
        assert_eq!(events[1].data, "next");
        // Byte by byte around the line ends.
        let mut d = SseDecoder::default();
        let mut events = Vec::new();
        for b in b"data: a\r\n\r\ndata: b\n\n" {
            events.extend(d.push(std::slice::from_ref(b)));
        }
        let data: Vec<_> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["a", "b"]);
    }
}
