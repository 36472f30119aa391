//! Times in answers: RFC 3339, from the Unix milliseconds the services store.

/// Formats Unix milliseconds as RFC 3339 (empty for a time out of range).
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
