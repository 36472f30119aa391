//! Personal API keys: `acr_` followed by 32 random bytes (base64url). Only a SHA-256 of the key and
//! a short display prefix are stored; lookup is by prefix and the hash comparison is constant-time.
//! Every request made with a key reads its row, so revocation and expiry take effect on the next
//! request on every gateway replica that shares the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use service_runtime::db::Database;
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::identity::{AuthError, AuthMethod, Caller, Scope, Scopes};

/// Every key starts with this, so leaked keys are easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "acr_";
/// Random characters kept after `acr_` as the key's visible, non-secret prefix.
const DISPLAY_CHARS: usize = 8;
/// Length of the random part: 32 bytes in unpadded base64url.
const SECRET_CHARS: usize = 43;
/// How often `last_used_at` is written at most, per key.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

static MIGRATIONS: service_runtime::db::Migrations = service_runtime::migrations!();

/// A stored key, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Key id (for revocation).
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// The first characters of the key, to recognise it; not a secret.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// RFC 3339 time of the last use (to the minute), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// RFC 3339 expiry, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// How long a key the database does not know is answered "invalid" without asking it again.
/// Keys are 32 random bytes, so no key that is created later can have been presented before.
const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(60);
/// Most unknown keys remembered; past that the oldest half is forgotten.
const UNKNOWN_KEYS_MAX: usize = 50_000;

/// The gateway's key table.
#[derive(Debug, Clone)]
pub struct ApiKeyStore {
    db: Database,
    /// Hashes of keys recently found unknown or revoked, with when: a flood of made-up `acr_…`
    /// keys (or of one revoked key) does not reach the database.
    unknown: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl ApiKeyStore {
    /// Connects and runs the gateway's migrations.
    pub async fn connect(
        url: &secrecy::SecretString,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        let db = Database::open("gateway", url, max_connections, &MIGRATIONS).await?;
        Ok(Self {
            db,
            unknown: Arc::default(),
        })
    }

    /// Creates a key for `user_id` and returns it with its secret, which is not kept.
    pub async fn create(
        &self,
        user_id: &str,
        name: &str,
        scopes: &Scopes,
        expires_in_days: Option<u32>,
    ) -> anyhow::Result<(ApiKey, String)> {
        let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let key = format!("{KEY_PREFIX}{secret}");
        let prefix = key[..KEY_PREFIX.len() + DISPLAY_CHARS].to_string();
        let id = uuid::Uuid::now_v7().to_string();
        let created = now_ms();
        let expires = expires_in_days.map(|d| created + i64::from(d) * 86_400_000);
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, scopes, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(&prefix)
        .bind(hash(&key))
        .bind(scopes.to_text())
        .bind(created)
        .bind(expires)
        .execute(self.db.traced())
        .await?;
        let record = ApiKey {
            id,
            name: name.to_string(),
            prefix,
            scopes: scopes.list(),
            created_at: crate::timestamp::rfc3339(created),
            last_used_at: None,
            expires_at: expires.map(crate::timestamp::rfc3339),
        };
        Ok((record, key))
    }

    /// How many live (unrevoked) keys `user_id` has.
    pub async fn count(&self, user_id: &str) -> anyhow::Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE user_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.db.traced())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// The live keys of `user_id`, oldest first, without secrets.
    pub async fn list(&self, user_id: &str) -> anyhow::Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, scopes, created_at_ms, last_used_at_ms, expires_at_ms \
             FROM api_keys WHERE user_id = $1 AND revoked_at_ms IS NULL ORDER BY created_at_ms, id",
        )
        .bind(user_id)
        .fetch_all(self.db.traced())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKey {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    prefix: row.try_get("prefix")?,
                    scopes: Scopes::from_text(&row.try_get::<String, _>("scopes")?).list(),
                    created_at: crate::timestamp::rfc3339(row.try_get("created_at_ms")?),
                    last_used_at: row
                        .try_get::<Option<i64>, _>("last_used_at_ms")?
                        .map(crate::timestamp::rfc3339),
                    expires_at: row
                        .try_get::<Option<i64>, _>("expires_at_ms")?
                        .map(crate::timestamp::rfc3339),
                })
            })
            .collect()
    }

    /// Revokes key `id` of `user_id`; false when there is no such live key of that user.
    pub async fn revoke(&self, user_id: &str, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND user_id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(self.db.traced())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether the key with SHA-256 `digest` was found unknown or revoked in the last minute.
    fn known_invalid(&self, digest: &[u8; 32]) -> bool {
        let unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        unknown
            .get(digest)
            .is_some_and(|seen| seen.elapsed() < UNKNOWN_KEY_TTL)
    }

    fn remember_invalid(&self, digest: [u8; 32]) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        if unknown.len() >= UNKNOWN_KEYS_MAX {
            unknown.retain(|_, seen| seen.elapsed() < UNKNOWN_KEY_TTL);
            if unknown.len() >= UNKNOWN_KEYS_MAX {
                let mut ages: Vec<Instant> = unknown.values().copied().collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                unknown.retain(|_, seen| *seen > cutoff);
            }
        }
        unknown.insert(digest, Instant::now());
    }

    /// Verifies a presented key and returns its caller. A malformed key, or one recently found
    /// unknown, is refused without a database query.
    pub async fn authenticate(&self, key: &str) -> Result<Caller, AuthError> {
        let well_formed = key.len() == KEY_PREFIX.len() + SECRET_CHARS
            && key.starts_with(KEY_PREFIX)
            && key[KEY_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(AuthError::KeyInvalid);
        }
        // Hashed once: the memory of unknown keys and the stored hashes both use it.
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if self.known_invalid(&digest) {
            return Err(AuthError::KeyInvalid);
        }
        let result = self.look_up(key, &digest).await;
        if result == Err(AuthError::KeyInvalid) {
            self.remember_invalid(digest);
        }
        result
    }

    /// Finds the well-formed `key` (with SHA-256 `digest`) among the live keys of its prefix.
    async fn look_up(&self, key: &str, digest: &[u8; 32]) -> Result<Caller, AuthError> {
        let prefix = &key[..KEY_PREFIX.len() + DISPLAY_CHARS];
        crate::metrics::record_key_lookup();
        let rows = sqlx::query(
            "SELECT id, user_id, secret_hash, scopes, expires_at_ms, last_used_at_ms \
             FROM api_keys WHERE prefix = $1 AND revoked_at_ms IS NULL",
        )
        .bind(prefix)
        .fetch_all(self.db.traced())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "API key lookup failed");
            AuthError::KeyStoreUnavailable
        })?;
        let presented = hex::encode(digest);
        let row = rows
            .iter()
            .find(|row| {
                row.try_get::<String, _>("secret_hash")
                    .is_ok_and(|stored| bool::from(stored.as_bytes().ct_eq(presented.as_bytes())))
            })
            .ok_or(AuthError::KeyInvalid)?;
        let read = |e: sqlx::Error| {
            tracing::error!(error = %e, "API key row unreadable");
            AuthError::KeyStoreUnavailable
        };
        let now = now_ms();
        if row
            .try_get::<Option<i64>, _>("expires_at_ms")
            .map_err(read)?
            .is_some_and(|expires| now >= expires)
        {
            return Err(AuthError::KeyExpired);
        }
        let id: String = row.try_get("id").map_err(read)?;
        let last_used: Option<i64> = row.try_get("last_used_at_ms").map_err(read)?;
        if last_used.is_none_or(|t| now - t >= LAST_USED_RESOLUTION_MS) {
            // Off the request path: a slow write must not slow the request down.
            // Its span stays in the request's trace.
            let db = self.db.clone();
            let id = id.clone();
            tokio::spawn(
                async move {
                    let _ = sqlx::query("UPDATE api_keys SET last_used_at_ms = $1 WHERE id = $2")
                        .bind(now)
                        .bind(id)
                        .execute(db.traced())
                        .await;
                }
                .in_current_span(),
            );
        }
        Ok(Caller {
            user_id: row.try_get("user_id").map_err(read)?,
            method: AuthMethod::ApiKey {
                id,
                scopes: Scopes::from_text(&row.try_get::<String, _>("scopes").map_err(read)?),
            },
        })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.db.ping().await
    }
}
