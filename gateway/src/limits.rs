//! Rate limits per (user or client IP, route group), by GCRA.
//!
//! In one process the state lives in governor's keyed limiters. With `REDIS_URL` set it lives in
//! Redis, updated atomically by one Lua script, so every gateway replica spends one shared budget.
//! If Redis stops answering, [`RedisFailureMode`] decides: by default (`open`) the gateway falls
//! back to its in-process limiter and keeps serving; `closed` refuses limited requests with 503
//! instead. Either way it logs the outage once, stops asking Redis for a second at a time (so a
//! dead Redis costs requests no latency), and goes back to Redis once it answers again.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};
use service_runtime::redis_client::{Outage, RedisClient, RedisTimeouts};
use service_runtime::redis_endpoint::RedisEndpoint;

mod route_group;
pub use route_group::RouteGroup;

/// A budget of `limit` requests per `period`, refilled continuously (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Requests allowed in one period (also the burst size).
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl RateLimitPolicy {
    /// A new policy; `limit` is at least 1 and `period` at least 1 ms.
    pub fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit: limit.max(1),
            period: period.max(Duration::from_millis(1)),
        }
    }

    /// Time to earn back one request.
    fn emission_interval(&self) -> Duration {
        self.period / self.limit
    }
}

impl fmt::Display for RateLimitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.period.as_secs())
    }
}

impl FromStr for RateLimitPolicy {
    type Err = String;

    /// Parses `100/15m`, `10/1h`, `5/900s`, `1000/1d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (limit, period) = s
            .split_once('/')
            .ok_or_else(|| "expected LIMIT/PERIOD such as 100/15m".to_string())?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|_| format!("limit {limit:?} is not a whole number"))?;
        if limit == 0 {
            return Err("limit must be at least 1".into());
        }
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (amount, unit) = period.split_at(split);
        let amount: u64 = if amount.is_empty() {
            1
        } else {
            amount
                .parse()
                .map_err(|_| format!("period {period:?} is not a number with a unit"))?
        };
        let seconds = match unit {
            "s" | "sec" | "" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => return Err(format!("unknown period unit {other:?} (use s, m, h or d)")),
        };
        if amount == 0 {
            return Err("period must be longer than zero".into());
        }
        Ok(Self::new(limit, Duration::from_secs(amount * seconds)))
    }
}

/// Rate limits per route group, and where their state lives.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `RATE_LIMIT_API`, default `100/15m`.
    pub api: RateLimitPolicy,
    /// `RATE_LIMIT_AI`, default `20/15m`.
    pub ai: RateLimitPolicy,
    /// `RATE_LIMIT_DEPLOY`, default `10/1h`.
    pub deploy: RateLimitPolicy,
    /// `RATE_LIMIT_SANDBOX`, default `100/15m` (a budget of its own, separate from the API group).
    pub sandbox: RateLimitPolicy,
    /// `RATE_LIMIT_AUTH`, default `5/15m`.
    pub auth: RateLimitPolicy,
    /// `RATE_LIMIT_INTEGRATIONS`, default `20/1h` (saving a connection calls the provider).
    pub integrations: RateLimitPolicy,
    /// `REDIS_URL` (and `REDIS_CA_FILE` for `rediss://`): when set, limits live in Redis and
    /// every gateway replica shares them.
    pub redis_url: Option<RedisEndpoint>,
    /// `RATE_LIMIT_REDIS_FAILURE`, default `open`: what to do while Redis does not answer (fall
    /// back to in-process limits, or refuse limited requests with 503).
    pub redis_failure: RedisFailureMode,
    /// `RATE_LIMIT_ENABLED`, default true; false turns limiting off (benchmarks only).
    pub enabled: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            api: RateLimitPolicy::new(100, Duration::from_secs(15 * 60)),
            ai: RateLimitPolicy::new(20, Duration::from_secs(15 * 60)),
            deploy: RateLimitPolicy::new(10, Duration::from_secs(60 * 60)),
            sandbox: RateLimitPolicy::new(100, Duration::from_secs(15 * 60)),
            auth: RateLimitPolicy::new(5, Duration::from_secs(15 * 60)),
            integrations: RateLimitPolicy::new(20, Duration::from_secs(60 * 60)),
            redis_url: None,
            redis_failure: RedisFailureMode::default(),
            enabled: true,
        }
    }
}

/// What the gateway does while Redis, holding the shared budgets, does not answer
/// (`RATE_LIMIT_REDIS_FAILURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisFailureMode {
    /// Fail open (default): each gateway limits with its own in-process budgets until Redis is
    /// back, so every request is still limited, but replicas no longer share one budget.
    #[default]
    Open,
    /// Fail closed: refuse every limited request with 503 until Redis is back, so no budget can
    /// ever be exceeded.
    Closed,
}

impl FromStr for RedisFailureMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            other => Err(format!(
                "{other:?} is not a failure mode: use `open` (fall back to in-process limits) or \
                 `closed` (refuse with 503)"
            )),
        }
    }
}

/// The shared limiter cannot decide (Redis does not answer and the failure mode is `closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterUnavailable {
    /// Seconds after which asking again makes sense.
    pub retry_after_secs: u64,
}

/// How long the gateway stops asking Redis after it failed to answer.
const REDIS_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The outcome of one check, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The group's limit.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the budget is full again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying, when refused.
    pub retry_after_secs: u64,
}

type KeyedGovernor =
    Governor<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct LocalGroup {
    policy: RateLimitPolicy,
    limiter: KeyedGovernor,
}

/// The gateway's limiter: one budget per (key, group).
pub struct RateLimiter {
    groups: HashMap<RouteGroup, LocalGroup>,
    rejections: HashMap<RouteGroup, AtomicU64>,
    redis: Option<RedisLimiter>,
    redis_failure: RedisFailureMode,
    enabled: bool,
    /// Budgets seen used up, until when: lets the guard refuse a request whose credentials it
    /// has not verified yet (an API key needing a database lookup) without any lookup.
    exhausted: Mutex<HashMap<(RouteGroup, String), Instant>>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("shared", &self.redis.is_some())
            .field("redis_failure", &self.redis_failure)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl RateLimiter {
    /// Builds the limiter; with a Redis URL the budgets are shared through Redis.
    pub fn new(config: &LimitsConfig) -> anyhow::Result<Self> {
        let mut groups = HashMap::new();
        for group in RouteGroup::ALL {
            let policy = match group {
                RouteGroup::Api => config.api,
                RouteGroup::Ai => config.ai,
                RouteGroup::Deploy => config.deploy,
                RouteGroup::Sandbox => config.sandbox,
                RouteGroup::Integrations => config.integrations,
                RouteGroup::Auth => config.auth,
            };
            let burst = NonZeroU32::new(policy.limit).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(policy.emission_interval())
                .unwrap_or_else(|| Quota::per_second(burst))
                .allow_burst(burst);
            let limiter = Governor::dashmap(quota).with_middleware::<StateInformationMiddleware>();
            groups.insert(group, LocalGroup { policy, limiter });
        }
        let redis = config
            .redis_url
            .as_ref()
            .map(|endpoint| RedisLimiter::new(endpoint, config.redis_failure))
            .transpose()?;
        Ok(Self {
            groups,
            rejections: RouteGroup::ALL
                .iter()
                .map(|g| (*g, AtomicU64::new(0)))
                .collect(),
            redis,
            redis_failure: config.redis_failure,
            enabled: config.enabled,
            exhausted: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the budgets are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Spends one request of `key`'s budget in `group`. Fails only when the budgets are shared,
    /// Redis does not answer and the failure mode is [`RedisFailureMode::Closed`].
    pub async fn check(
        &self,
        group: RouteGroup,
        key: &str,
    ) -> Result<Decision, LimiterUnavailable> {
        let local = &self.groups[&group];
        let policy = local.policy;
        if !self.enabled {
            return Ok(Decision {
                allowed: true,
                limit: policy.limit,
                remaining: policy.limit,
                reset_secs: 0,
                retry_after_secs: 0,
            });
        }
        if let Some(redis) = &self.redis {
            if let Some(decision) = redis.check(group, key, policy).await {
                return Ok(decision);
            }
            if self.redis_failure == RedisFailureMode::Closed {
                return Err(LimiterUnavailable {
                    retry_after_secs: REDIS_RETRY_INTERVAL.as_secs().max(1),
                });
            }
        }
        Ok(check_local(local, key))
    }

    /// Spends one request like [`Self::check`], remembering a refusal so that
    /// [`Self::known_exhausted`] can answer without asking again.
    pub async fn check_and_remember(
        &self,
        group: RouteGroup,
        key: &str,
    ) -> Result<Decision, LimiterUnavailable> {
        let decision = self.check(group, key).await?;
        // Refused, or allowed with nothing left: either way the next request is refused until
        // the budget earns one back.
        let wait = if !decision.allowed {
            Some(Duration::from_secs(decision.retry_after_secs))
        } else if decision.remaining == 0 {
            Some(self.groups[&group].policy.emission_interval())
        } else {
            None
        };
        if let Some(wait) = wait {
            let until = Instant::now() + wait;
            self.exhausted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((group, key.to_string()), until);
        }
        Ok(decision)
    }

    /// A refusal for `key` in `group` when its budget was seen used up and has not refilled
    /// since, decided from memory: no Redis round trip, nothing spent.
    pub fn known_exhausted(&self, group: RouteGroup, key: &str) -> Option<Decision> {
        let exhausted = self.exhausted.lock().unwrap_or_else(|e| e.into_inner());
        let until = *exhausted.get(&(group, key.to_string()))?;
        let left = until.checked_duration_since(Instant::now())?;
        let policy = self.groups[&group].policy;
        Some(Decision {
            allowed: false,
            limit: policy.limit,
            remaining: 0,
            reset_secs: ceil_secs(policy.emission_interval() * policy.limit),
            retry_after_secs: ceil_secs(left).max(1),
        })
    }

    /// Counts a refused request of `group` (here and in `rate_limit_rejections_total`).
    pub fn note_rejection(&self, group: RouteGroup) {
        self.rejections[&group].fetch_add(1, Ordering::Relaxed);
        crate::metrics::record_rejection(group.name());
    }

    /// Requests refused so far in `group`.
    pub fn rejections(&self, group: RouteGroup) -> u64 {
        self.rejections[&group].load(Ordering::Relaxed)
    }

    /// Drops idle keys from the in-process limiters so memory stays bounded.
    pub fn forget_idle(&self) {
        for group in self.groups.values() {
            group.limiter.retain_recent();
            group.limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.exhausted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, until| *until > now);
    }
}

fn check_local(group: &LocalGroup, key: &str) -> Decision {
    let policy = group.policy;
    let interval = policy.emission_interval();
    match group.limiter.check_key(&key.to_string()) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let used = policy.limit.saturating_sub(remaining);
            Decision {
                allowed: true,
                limit: policy.limit,
                remaining,
                reset_secs: ceil_secs(interval * used),
                retry_after_secs: 0,
            }
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Decision {
                allowed: false,
                limit: policy.limit,
                remaining: 0,
                reset_secs: ceil_secs(interval * policy.limit),
                retry_after_secs: ceil_secs(wait).max(1),
            }
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

/// GCRA in Redis. The script reads the server's clock, so replicas with skewed clocks still agree.
/// KEYS[1]: the budget's key. ARGV[1]: emission interval in µs. ARGV[2]: the limit.
/// Returns {allowed, retry_after_us, reset_us, remaining}.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tolerance = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, allow_at - now, tat - now, 0}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0, new_tat - now, math.floor((tolerance - (new_tat - now)) / interval)}
";

/// The budgets in Redis, shared by every replica: a GCRA script per request on a connection that
/// is skipped for [`REDIS_RETRY_INTERVAL`] after a failure.
struct RedisLimiter {
    redis: RedisClient,
    script: redis::Script,
}

impl RedisLimiter {
    fn new(endpoint: &RedisEndpoint, mode: RedisFailureMode) -> anyhow::Result<Self> {
        let timeouts = RedisTimeouts {
            retry_interval: REDIS_RETRY_INTERVAL,
            ..RedisTimeouts::default()
        };
        let outage = Outage {
            meanwhile: match mode {
                RedisFailureMode::Open => "limiting with the in-process limiter until it answers",
                RedisFailureMode::Closed => {
                    "refusing limited requests with 503 until it answers \
                     (RATE_LIMIT_REDIS_FAILURE=closed)"
                }
            },
            severe: mode == RedisFailureMode::Closed,
            notify: crate::metrics::set_limiter_redis_available,
        };
        Ok(Self {
            redis: RedisClient::new(endpoint.client()?, timeouts, "rate limiter")
                .with_outage(outage),
            script: redis::Script::new(GCRA_SCRIPT),
        })
    }

    /// `key`'s decision from Redis, or `None` while Redis does not answer.
    async fn check(
        &self,
        group: RouteGroup,
        key: &str,
        policy: RateLimitPolicy,
    ) -> Option<Decision> {
        let mut conn = self.redis.connection().await?;
        let interval_us = policy.emission_interval().as_micros().max(1) as u64;
        let redis_key = format!("autocrea:rl:{}:{}", group.name(), key);
        let answer: redis::RedisResult<(i64, i64, i64, i64)> = self
            .script
            .key(redis_key)
            .arg(interval_us)
            .arg(policy.limit)
            .invoke_async(&mut conn)
            .await;
        let (allowed, retry_us, reset_us, remaining) = match answer {
            Ok(answer) => {
                self.redis.answered();
                answer
            }
            Err(error) => {
                self.redis.failed(&error);
                return None;
            }
        };
        let to_secs = |us: i64| (us.max(0) as u64).div_ceil(1_000_000);
        Some(Decision {
            allowed: allowed == 1,
            limit: policy.limit,
            remaining: remaining.clamp(0, i64::from(policy.limit)) as u32,
            reset_secs: to_secs(reset_us),
            retry_after_secs: to_secs(retry_us).max(u64::from(allowed != 1)),
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policies() {
        assert_eq!(
            "100/15m".parse::<RateLimitPolicy>().unwrap(),
            RateLimitPolicy::new(100, Duration::from_secs(900))
        );
        assert_eq!(
            "10/1h".parse::<RateLimitPolicy>().unwrap(),
            RateLimitPolicy::new(10, Duration::from_secs(3600))
        );
        assert_eq!(
            "5/h".parse::<RateLimitPolicy>().unwrap(),
            RateLimitPolicy::new(5, Duration::from_secs(3600))
        );
        assert!("0/1m".parse::<RateLimitPolicy>().is_err());
        assert!("10/0m".parse::<RateLimitPolicy>().is_err());
        assert!("10/5y".parse::<RateLimitPolicy>().is_err());
        assert!("ten/5m".parse::<RateLimitPolicy>().is_err());
    }

    #[test]
    fn parses_failure_modes() {
        assert_eq!("open".parse(), Ok(RedisFailureMode::Open));
        assert_eq!(" Closed ".parse(), Ok(RedisFailureMode::Closed));
        assert!("deny".parse::<RedisFailureMode>().is_err());
        assert_eq!(RedisFailureMode::default(), RedisFailureMode::Open);
    }

    #[tokio::test]
    async fn local_budget_is_exact_and_per_key() {
        let config = LimitsConfig {
            api: RateLimitPolicy::new(3, Duration::from_secs(3600)),
            ..Default::default()
        };
        let limiter = RateLimiter::new(&config).unwrap();
        for expected_remaining in [2, 1, 0] {
            let d = limiter.check(RouteGroup::Api, "a").await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
        }
        let refused = limiter.check(RouteGroup::Api, "a").await.unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after_secs >= 1000, "{refused:?}");
        assert!(limiter.check(RouteGroup::Api, "b").await.unwrap().allowed);
        assert!(limiter.check(RouteGroup::Ai, "a").await.unwrap().allowed);
    }
}
