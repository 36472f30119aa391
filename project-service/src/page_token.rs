//! The opaque cursor of `ListProjects`: the position (created_at_ms, id) of the last project on
//! the previous page, with a checksum bound to the caller.
//!
//! The checksum is not a secret MAC: every query is scoped to the caller anyway, so a forged
//! token could only page through the caller's own projects. It makes garbage and edited tokens
//! fail loudly (INVALID_ARGUMENT) instead of silently returning a wrong page, and keeps a token
//! from being replayed by another user.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::Invalid;

/// Where the next page starts: after this project in (created_at_ms desc, id desc) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time of the last project returned.
    pub created_at_ms: i64,
    /// Id of the last project returned.
    pub id: String,
}

impl Cursor {
    /// The token that encodes this cursor for `owner`.
    pub fn encode(&self, owner: &str) -> String {
        let payload = format!("{}.{}", self.created_at_ms, self.id);
        let tag = checksum(owner, &payload);
        URL_SAFE_NO_PAD.encode(format!("{payload}.{tag}"))
    }

    /// The cursor in `token`, checked against `owner`.
    pub fn decode(owner: &str, token: &str) -> Result<Self, Invalid> {
        Self::try_decode(owner, token).ok_or_else(|| {
            Invalid::new(
                "pageToken",
                "is not a token this service issued to you (it is malformed or was changed); \
                 pass nextPageToken of the previous page unchanged, or leave it empty for the \
                 first page",
            )
        })
    }

    fn try_decode(owner: &str, token: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let (payload, tag) = raw.rsplit_once('.')?;
        if checksum(owner, payload) != tag {
            return None;
        }
        let (created, id) = payload.split_once('.')?;
        let created_at_ms = created.parse().ok()?;
        let id = uuid::Uuid::parse_str(id).ok()?.to_string();
        Some(Self { created_at_ms, id })
    }
}

fn checksum(owner: &str, payload: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"autocrea.project.v1.page-token\n");
    hash.update(owner.as_bytes());
    hash.update(b"\n");
    hash.update(payload.as_bytes());
    hex::encode(&hash.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            created_at_ms: 1_700_000_000_123,
            id: uuid::Uuid::now_v7().to_string(),
        }
    }

    #[test]
    fn round_trips() {
        let c = cursor();
        assert_eq!(Cursor::decode("u1", &c.encode("u1")).unwrap(), c);
    }

    #[test]
    fn refuses_garbage_edits_and_other_owners() {
        let token = cursor().encode("u1");
        assert_eq!(Cursor::decode("u2", &token).unwrap_err().field, "pageToken");
        assert!(Cursor::decode("u1", "garbage!").is_err());
        assert!(Cursor::decode("u1", "").is_err());
        // Change every position in turn: none may decode.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(bytes).unwrap();
            assert!(Cursor::decode("u1", &edited).is_err(), "position {i}");
        }
    }
}
