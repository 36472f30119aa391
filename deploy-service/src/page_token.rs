//! The opaque cursor of `ListDeployments`: the position (created_at_ms, id) of the last
//! deployment on the previous page, with a checksum bound to the caller and the project filter.
//!
//! The checksum is not a secret MAC: every query is scoped to the caller anyway. It makes
//! garbage and edited tokens fail loudly (INVALID_ARGUMENT) instead of returning a wrong page.

use sha1::{Digest, Sha1};

use crate::error::Invalid;
use crate::store::Cursor;

/// The token that encodes `cursor` for `owner` listing `scope` (project id or empty).
pub fn encode(cursor: &Cursor, owner: &str, scope: &str) -> String {
    let payload = format!("{}.{}", cursor.created_at_ms, cursor.id);
    let tag = checksum(owner, scope, &payload);
    hex::encode(format!("{payload}.{tag}"))
}

/// The cursor in `token`, checked against `owner` and `scope`.
pub fn decode(token: &str, owner: &str, scope: &str) -> Result<Cursor, Invalid> {
    try_decode(token, owner, scope).ok_or_else(|| {
        Invalid::new(
            "pageToken",
            "is not a token this service issued for this listing; pass nextPageToken of the \
             previous page unchanged, or leave it empty for the first page",
        )
    })
}

fn try_decode(token: &str, owner: &str, scope: &str) -> Option<Cursor> {
    let raw = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (payload, tag) = raw.rsplit_once('.')?;
    if checksum(owner, scope, payload) != tag {
        return None;
    }
    let (created, id) = payload.split_once('.')?;
    Some(Cursor {
        created_at_ms: created.parse().ok()?,
        id: uuid::Uuid::parse_str(id).ok()?.to_string(),
    })
}

fn checksum(owner: &str, scope: &str, payload: &str) -> String {
    let mut hash = Sha1::new();
    hash.update(b"autocrea.deploy.v1.page-token\n");
    for part in [owner, scope, payload] {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(&hash.finalize()[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_edits() {
        let cursor = Cursor {
            created_at_ms: 1_700_000_000_000,
            id: uuid::Uuid::now_v7().to_string(),
        };
        let token = encode(&cursor, "u1", "");
        assert_eq!(decode(&token, "u1", "").unwrap(), cursor);
        assert!(decode(&token, "u2", "").is_err());
        assert!(decode(&token, "u1", "p").is_err());
        assert!(decode("zz", "u1", "").is_err());
    }
}
