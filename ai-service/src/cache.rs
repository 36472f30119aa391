//! The prompt cache: a model's raw answer to an identical request (same provider, model,
//! operation and normalized input), reused within a TTL. In Redis when configured, so that every
//! replica shares it; otherwise in a bounded in-process cache (moka, least recently used out
//! first).
//!
//! Answers are scoped per user by default (`AI_CACHE_SCOPE=user`): a hit would otherwise tell
//! one user that another sent the same prompt. `global` shares them between users.
//!
//! A cache that fails (Redis down, at start or later) never fails a call: it is logged, counted
//! as a miss, and Redis is asked again after a retry interval.

use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use service_runtime::redis_client::RedisClient;
use sha2::{Digest, Sha256};

use crate::config::{CacheConfig, CacheScope};

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
    store: Store,
    scope: CacheScope,
}

enum Store {
    Off,
    Memory(Cache<String, CachedAnswer>),
    Redis {
        // Boxed: the client with its locks is much larger than the other stores.
        redis: Box<RedisClient>,
        prefix: String,
        ttl: Duration,
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

impl PromptCache {
    /// Uses Redis when `redis` is given, else keeps the cache in memory; a zero TTL, or a zero
    /// size in memory, turns caching off. Fails only on an unusable URL or CA file: a Redis that
    /// does not answer yet is a warning, and calls go on without the cache until it does.
    pub async fn open(
        config: &CacheConfig,
        redis: Option<&service_runtime::redis_endpoint::RedisEndpoint>,
    ) -> anyhow::Result<Self> {
        let store = if config.ttl.is_zero() {
            tracing::info!("prompt cache off (AI_CACHE_TTL_SECS=0)");
            Store::Off
        } else if let Some(endpoint) = redis {
            let redis = RedisClient::new(endpoint.client()?, config.redis_timeouts, "prompt cache");
            redis.connect_at_start().await?;
            tracing::info!(scope = config.scope.as_str(), "prompt cache in Redis");
            Store::Redis {
                redis: Box::new(redis),
                prefix: config.redis_prefix.clone(),
                ttl: config.ttl,
            }
        } else if config.max_entries == 0 {
            tracing::info!("prompt cache off (AI_CACHE_MAX_ENTRIES=0 and no REDIS_URL)");
            Store::Off
        } else {
            tracing::info!(
                max_entries = config.max_entries,
                scope = config.scope.as_str(),
                "prompt cache in memory (set REDIS_URL to share it between replicas)"
            );
            Store::Memory(
                Cache::builder()
                    .max_capacity(u64::try_from(config.max_entries).unwrap_or(u64::MAX))
                    .time_to_live(config.ttl)
                    .eviction_policy(EvictionPolicy::lru())
                    .build(),
            )
        };
        Ok(Self {
            store,
            scope: config.scope,
        })
    }

    /// The key of `user`'s request: a digest, so that prompts never appear in Redis key
    /// listings. With the per-user scope the user is part of it, so that nobody is answered
    /// from another user's entry.
    pub fn key(
        &self,
        user: &str,
        provider: &str,
        model: &str,
        operation: &str,
        input: &str,
    ) -> String {
        let scope = match self.scope {
            CacheScope::User => user,
            // Not a possible user id part: an empty scope.
            CacheScope::Global => "",
        };
        let mut h = Sha256::new();
        for part in [scope, provider, model, operation, input] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The cached answer under `key`, if any.
    pub async fn get(&self, key: &str) -> Option<CachedAnswer> {
        match &self.store {
            Store::Off => None,
            Store::Memory(cache) => cache.get(key),
            Store::Redis { redis, prefix, .. } => {
                let mut conn = redis.connection().await?;
                let raw: redis::RedisResult<Option<String>> =
                    conn.get(format!("{prefix}{key}")).await;
                match raw {
                    Ok(json) => {
                        redis.answered();
                        serde_json::from_str(&json?).ok()
                    }
                    Err(e) => {
                        redis.failed(&e);
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
            Store::Memory(cache) => cache.insert(key.to_string(), answer.clone()),
            Store::Redis { redis, prefix, ttl } => {
                let Some(mut conn) = redis.connection().await else {
                    return;
                };
                let Ok(json) = serde_json::to_string(answer) else {
                    return;
                };
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                let result: redis::RedisResult<()> =
                    conn.pset_ex(format!("{prefix}{key}"), json, ttl_ms).await;
                match result {
                    Ok(()) => redis.answered(),
                    Err(e) => redis.failed(&e),
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

    async fn in_memory(ttl: Duration, max_entries: usize) -> PromptCache {
        let config = CacheConfig {
            ttl,
            max_entries,
            ..CacheConfig::default()
        };
        PromptCache::open(&config, None).await.unwrap()
    }

    #[tokio::test]
    async fn an_answer_expires_and_one_put_again_after_expiry_is_served() {
        let cache = in_memory(Duration::from_millis(100), 10).await;
        cache.put("a", &answer("1")).await;
        assert_eq!(cache.get("a").await, Some(answer("1")));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cache.get("a").await, None, "expired");
        cache.put("a", &answer("2")).await;
        assert_eq!(cache.get("a").await, Some(answer("2")));
        // Later entries do not push out the one put again.
        cache.put("b", &answer("3")).await;
        assert_eq!(cache.get("a").await, Some(answer("2")));
    }

    #[tokio::test]
    async fn the_memory_cache_is_bounded() {
        let cache = in_memory(Duration::from_secs(60), 5).await;
        for n in 0..50 {
            cache.put(&n.to_string(), &answer(&n.to_string())).await;
        }
        let Store::Memory(memory) = &cache.store else {
            panic!("in memory: {:?}", cache.store);
        };
        memory.run_pending_tasks();
        assert!(memory.entry_count() <= 5, "{}", memory.entry_count());
        assert_eq!(
            cache.get("49").await,
            Some(answer("49")),
            "the newest stays"
        );
        assert_eq!(cache.get("0").await, None, "the oldest went");
    }

    #[tokio::test]
    async fn a_zero_ttl_or_size_turns_the_memory_cache_off() {
        for cache in [
            in_memory(Duration::ZERO, 10).await,
            in_memory(Duration::from_secs(60), 0).await,
        ] {
            cache.put("a", &answer("1")).await;
            assert_eq!(cache.get("a").await, None);
        }
    }
}
