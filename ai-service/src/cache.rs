//! The prompt cache: a model's raw answer to an identical request (same provider, model,
//! operation and normalized input), reused within a TTL. In Redis when configured, so that every
//! replica shares it; otherwise in a bounded in-process map.
//!
//! A cache that fails (Redis down) never fails a call: it is logged and counted as a miss.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::CacheConfig;

/// What is kept: the raw model text, post-processed again on every hit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedAnswer {
    /// The model's text.
    pub text: String,
    /// The model that wrote it.
    pub model: String,
}

/// The cache, shared by all calls.
#[derive(Debug)]
pub struct PromptCache {
    ttl: Duration,
    store: Store,
}

enum Store {
    Off,
    Memory(Mutex<MemoryStore>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "Off",
            Self::Memory(_) => "Memory",
            Self::Redis { .. } => "Redis",
        })
    }
}

/// Insertion-ordered map: the oldest entry goes first when full, expired ones on sight.
#[derive(Default)]
struct MemoryStore {
    max: usize,
    entries: HashMap<String, (Instant, CachedAnswer)>,
    order: VecDeque<String>,
}

impl MemoryStore {
    fn get(&mut self, key: &str) -> Option<CachedAnswer> {
        match self.entries.get(key) {
            Some((expires, answer)) if *expires > Instant::now() => Some(answer.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: String, answer: CachedAnswer, ttl: Duration) {
        if self.max == 0 {
            return;
        }
        if self
            .entries
            .insert(key.clone(), (Instant::now() + ttl, answer))
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.entries.len() > self.max {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        // Keys removed as expired stay in `order`; keep it from growing past twice the bound.
        if self.order.len() > self.max * 2 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}

impl PromptCache {
    /// Connects to Redis when `redis_url` is given, else keeps the cache in memory; a zero TTL
    /// turns caching off.
    pub async fn open(config: &CacheConfig, redis_url: Option<&str>) -> anyhow::Result<Self> {
        let store = if config.ttl.is_zero() {
            tracing::info!("prompt cache off (AI_CACHE_TTL_SECS=0)");
            Store::Off
        } else if let Some(url) = redis_url {
            let client = redis::Client::open(url).context("REDIS_URL is not a Redis URL")?;
            let conn = ConnectionManager::new(client)
                .await
                .context("cannot connect to Redis (REDIS_URL)")?;
            tracing::info!("prompt cache in Redis");
            Store::Redis {
                conn,
                prefix: config.redis_prefix.clone(),
            }
        } else {
            tracing::info!(
                max_entries = config.max_entries,
                "prompt cache in memory (set REDIS_URL to share it between replicas)"
            );
            Store::Memory(Mutex::new(MemoryStore {
                max: config.max_entries,
                ..Default::default()
            }))
        };
        Ok(Self {
            ttl: config.ttl,
            store,
        })
    }

    /// The key of a request: a digest, so that prompts never appear in Redis key listings.
    pub fn key(provider: &str, model: &str, operation: &str, input: &str) -> String {
        let mut h = Sha256::new();
        for part in [provider, model, operation, input] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The cached answer under `key`, if any.
    pub async fn get(&self, key: &str) -> Option<CachedAnswer> {
        match &self.store {
            Store::Off => None,
            Store::Memory(m) => m.lock().unwrap_or_else(|p| p.into_inner()).get(key),
            Store::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let raw: redis::RedisResult<Option<String>> =
                    conn.get(format!("{prefix}{key}")).await;
                match raw {
                    Ok(Some(json)) => serde_json::from_str(&json).ok(),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "prompt cache read failed; calling the provider");
                        None
                    }
                }
            }
        }
    }

    /// Keeps `answer` under `key` for the TTL.
    pub async fn put(&self, key: &str, answer: &CachedAnswer) {
        match &self.store {
            Store::Off => {}
            Store::Memory(m) => m.lock().unwrap_or_else(|p| p.into_inner()).put(
                key.to_string(),
                answer.clone(),
                self.ttl,
            ),
            Store::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let Ok(json) = serde_json::to_string(answer) else {
                    return;
                };
                let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
                let result: redis::RedisResult<()> =
                    conn.pset_ex(format!("{prefix}{key}"), json, ttl_ms).await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "prompt cache write failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> CachedAnswer {
        CachedAnswer {
            text: text.into(),
            model: "m".into(),
        }
    }

    #[test]
    fn memory_store_is_bounded_and_expires() {
        let mut store = MemoryStore {
            max: 2,
            ..Default::default()
        };
        let ttl = Duration::from_secs(60);
        store.put("a".into(), answer("1"), ttl);
        store.put("b".into(), answer("2"), ttl);
        store.put("c".into(), answer("3"), ttl);
        assert_eq!(store.get("a"), None);
        assert_eq!(store.get("c"), Some(answer("3")));
        store.put("d".into(), answer("4"), Duration::ZERO);
        assert_eq!(store.get("d"), None);
    }
}
