//! Opaque page tokens of keyset-paginated listings: the position (created_at_ms, id) of the last
//! row of the previous page, with a checksum bound to the listing (which service and listing,
//! the caller, any filter).
//!
//! The checksum is not a secret MAC: every query is scoped to the caller anyway, so a forged
//! token could only page through the caller's own rows. It makes garbage and edited tokens fail
//! loudly (INVALID_ARGUMENT) instead of silently returning a wrong page, and keeps a token from
//! being replayed by another user or on another listing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::invalid::Invalid;

/// Where the next page starts: after this row in (created_at_ms desc, id desc) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time of the last row returned.
    pub created_at_ms: i64,
    /// Id (a UUID) of the last row returned.
    pub id: String,
}

/// One listing's tokens: `purpose` names it (`autocrea.project.v1.projects`), and every token is
/// bound to the `binding` values given (the caller, the filter).
#[derive(Debug, Clone, Copy)]
pub struct PageTokens {
    purpose: &'static str,
}

impl PageTokens {
    /// Tokens of the listing named `purpose`.
    pub const fn new(purpose: &'static str) -> Self {
        Self { purpose }
    }

    /// The token that encodes `cursor` for `binding`.
    pub fn encode(&self, cursor: &Cursor, binding: &[&str]) -> String {
        let payload = format!("{}.{}", cursor.created_at_ms, cursor.id);
        let tag = self.checksum(binding, &payload);
        URL_SAFE_NO_PAD.encode(format!("{payload}.{tag}"))
    }

    /// The cursor in `token`, checked against `binding`; an error about `pageToken` otherwise.
    pub fn decode(&self, token: &str, binding: &[&str]) -> Result<Cursor, Invalid> {
        self.try_decode(token, binding).ok_or_else(|| {
            Invalid::new(
                "pageToken",
                "is not a token this service issued to you for this listing (it is malformed or \
                 was changed); pass nextPageToken of the previous page unchanged, or leave it \
                 empty for the first page",
            )
        })
    }

    fn try_decode(&self, token: &str, binding: &[&str]) -> Option<Cursor> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let (payload, tag) = raw.rsplit_once('.')?;
        if self.checksum(binding, payload) != tag {
            return None;
        }
        let (created, id) = payload.split_once('.')?;
        Some(Cursor {
            created_at_ms: created.parse().ok()?,
            id: uuid::Uuid::parse_str(id).ok()?.to_string(),
        })
    }

    fn checksum(&self, binding: &[&str], payload: &str) -> String {
        let mut hash = Sha256::new();
        for part in std::iter::once(self.purpose)
            .chain(binding.iter().copied())
            .chain(std::iter::once(payload))
        {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(&hash.finalize()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKENS: PageTokens = PageTokens::new("autocrea.test.v1.things");

    fn cursor() -> Cursor {
        Cursor {
            created_at_ms: 1_700_000_000_123,
            id: uuid::Uuid::now_v7().to_string(),
        }
    }

    #[test]
    fn round_trips() {
        let c = cursor();
        assert_eq!(
            TOKENS.decode(&TOKENS.encode(&c, &["u1"]), &["u1"]).unwrap(),
            c
        );
        let scoped = TOKENS.encode(&c, &["u1", "p1"]);
        assert_eq!(TOKENS.decode(&scoped, &["u1", "p1"]).unwrap(), c);
    }

    #[test]
    fn refuses_garbage_edits_other_owners_listings_and_filters() {
        let token = TOKENS.encode(&cursor(), &["u1", ""]);
        assert_eq!(
            TOKENS.decode(&token, &["u2", ""]).unwrap_err().field,
            "pageToken"
        );
        assert!(TOKENS.decode(&token, &["u1", "p"]).is_err());
        assert!(TOKENS.decode(&token, &["u1"]).is_err());
        assert!(
            PageTokens::new("other")
                .decode(&token, &["u1", ""])
                .is_err()
        );
        assert!(TOKENS.decode("garbage!", &["u1", ""]).is_err());
        assert!(TOKENS.decode("", &["u1", ""]).is_err());
        // Change every position in turn: none may decode.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(bytes).unwrap();
            assert!(TOKENS.decode(&edited, &["u1", ""]).is_err(), "position {i}");
        }
    }
}
