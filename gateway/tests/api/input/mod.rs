//! Bad input gets a clear 4xx problem+json, never a 5xx.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::on_both_databases;

mod malformed;
mod sizes;
mod values;

/// Sends `head` (request line and headers, without the final blank line) byte for byte, so that
/// paths reach the gateway exactly as written (no client-side normalisation of `..`).
async fn raw(gw: &Gateway, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(gw.server.addr)
        .await
        .unwrap();
    let mut request = format!(
        "{head}\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

/// A stack with the production body limit (5 MiB), so that "10 MB" means what it says.
async fn production_limits_stack(db: Db) -> Stack {
    let default_limit = gateway::Config::new(gateway::config::AuthConfig::default()).max_body_bytes;
    Stack::start_with(db, |c| {
        c.limits = generous_limits();
        c.max_body_bytes = default_limit;
    })
    .await
}

/// Sends `head` with a body of `size` bytes (a JSON object holding one long string), declared
/// with `Content-Length` or sent chunked, writing while reading: the gateway may answer before it
/// has read the body, and must not wait for all of it. Returns the status, the response text and
/// how long the answer took.
async fn send_large(
    gw: &Gateway,
    head: &str,
    size: usize,
    chunked: bool,
) -> (u16, String, Duration) {
    let stream = tokio::net::TcpStream::connect(gw.server.addr)
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    let head = format!("{head}\r\nHost: localhost\r\nConnection: close\r\n{framing}\r\n\r\n");
    let started = Instant::now();
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let open = b"{\"content\":\"";
        let close = b"\"}";
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(open);
        body.resize(size - close.len(), b'x');
        body.extend_from_slice(close);
        for piece in body.chunks(64 * 1024) {
            if chunked {
                writer
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                writer.write_all(piece).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(piece).await?;
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        // Kept open: dropping it would half-close the connection, which the gateway takes for
        // a client that went away.
        Ok::<_, std::io::Error>(writer)
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        // A reset after the answer (the gateway closing on the unread rest) ends the reading.
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(e) => return Some(e),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 20 s to {size} bytes");
    let elapsed = started.elapsed();
    let written = tokio::time::timeout(Duration::from_secs(5), write).await;
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(
        text.len() >= 12,
        "no status line: {text:?}; read error {:?}, write {:?}",
        read.unwrap(),
        written.map(|w| w.map(|w| w.map(|_| ())))
    );
    (text[9..12].parse().unwrap(), text, elapsed)
}

/// Sends raw bytes (a whole request) and returns the status and the response text.
async fn raw_bytes(gw: &Gateway, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(gw.server.addr)
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(text.len() >= 12, "no status line: {text:?}");
    (text[9..12].parse().unwrap(), text)
}

fn problem_detail(text: &str) -> String {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_default()
}
