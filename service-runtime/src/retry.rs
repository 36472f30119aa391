//! Retries of transient failures: one policy for every call that leaves the process (AI
//! providers, hosting providers) and for the deploy poller's step retries.
//!
//! A [`RetryPolicy`] says how many attempts a call gets, how long to wait between them
//! (exponential back-off with full jitter, so that replicas do not retry in step), the total
//! deadline after which no retry starts, and the longest wait a server may ask for. A server's
//! own hint ([`retry_after`]: `Retry-After` in seconds or as an HTTP date, `retry-after-ms`,
//! `X-RateLimit-Reset`) replaces the back-off when the caller passes it on, and is capped by the
//! deadline: a hint that ends past it stops the retries at once.
//!
//! [`RetryPolicy::run`] drives a call: the caller's closure makes one attempt (its own span,
//! its own classification of the answer) and returns a [`Failed`] saying whether another
//! attempt may succeed; the loop waits, logs and gives up in one place.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use rand::Rng;

/// How a back-off is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the exponential back-off: for schedules that must stay predictable.
    None,
    /// Uniform between zero and the exponential back-off ("full jitter"), which spreads the
    /// retries of many clients best.
    Full,
}

/// How a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// Back-off before the first retry, doubled for each further one.
    pub initial_backoff: Duration,
    /// Largest back-off (before jitter).
    pub max_backoff: Duration,
    /// How the back-off is randomised.
    pub jitter: Jitter,
    /// No retry starts whose wait would end later than this after the first attempt began;
    /// `None` for no deadline.
    pub deadline: Option<Duration>,
    /// The longest wait a server's hint may ask for; a longer one ends the retries. `None` leaves
    /// only the deadline to cap hints.
    pub max_retry_after: Option<Duration>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Stop. The duration is when trying again makes sense: the server's hint, else the back-off
    /// the next retry would have waited.
    GiveUp(Duration),
}

impl Next {
    /// The wait either way.
    pub fn wait(self) -> Duration {
        match self {
            Self::Retry(wait) | Self::GiveUp(wait) => wait,
        }
    }
}

/// A failed attempt, as its caller classified it.
#[derive(Debug)]
pub struct Failed<E> {
    /// What went wrong.
    pub error: E,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// How long the server asked us to wait, when it said.
    pub retry_after: Option<Duration>,
}

impl<E> Failed<E> {
    /// A failure that another attempt would repeat.
    pub fn permanent(error: E) -> Self {
        Self {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure that may pass, with the server's hint of when.
    pub fn transient(error: E, retry_after: Option<Duration>) -> Self {
        Self {
            error,
            retryable: true,
            retry_after,
        }
    }
}

/// A call that failed for good.
#[derive(Debug)]
pub struct GaveUp<E> {
    /// The last attempt's error.
    pub error: E,
    /// Attempts made.
    pub attempts: u32,
    /// When trying again makes sense (see [`Next::GiveUp`]).
    pub retry_after: Duration,
}

impl RetryPolicy {
    /// The back-off before retry number `retry` (1 for the first retry):
    /// `initial × 2^(retry-1)`, capped at `max_backoff`, then jittered.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(rand::rng().random_range(0.0..=1.0)),
        }
    }

    /// After `attempts` attempts, `elapsed` since the first began, the last one failing
    /// transiently with the server's hint `retry_after`: retry after how long, or give up.
    pub fn next(&self, attempts: u32, elapsed: Duration, retry_after: Option<Duration>) -> Next {
        let wait = retry_after.unwrap_or_else(|| self.backoff(attempts));
        let out_of_attempts = attempts >= self.max_attempts.max(1);
        let hint_too_long = retry_after
            .zip(self.max_retry_after)
            .is_some_and(|(hint, max)| hint > max);
        let past_deadline = self
            .deadline
            .is_some_and(|deadline| elapsed.saturating_add(wait) > deadline);
        if out_of_attempts || hint_too_long || past_deadline {
            Next::GiveUp(wait)
        } else {
            Next::Retry(wait)
        }
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the policy gives up; returns the
    /// value, or the last error with when to try again. Each retry is logged with its wait.
    pub async fn run<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, GaveUp<E>>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failed<E>>>,
    {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failed = match attempt().await {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            let next = if failed.retryable {
                self.next(attempts, started.elapsed(), failed.retry_after)
            } else {
                Next::GiveUp(failed.retry_after.unwrap_or_else(|| self.backoff(attempts)))
            };
            match next {
                Next::Retry(wait) => {
                    tracing::info!(
                        attempt = attempts,
                        delay_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %failed.error,
                        "retrying after a transient failure"
                    );
                    tokio::time::sleep(wait).await;
                }
                Next::GiveUp(retry_after) => {
                    if failed.retryable {
                        tracing::warn!(attempts, error = %failed.error, "retries exhausted");
                    }
                    return Err(GaveUp {
                        error: failed.error,
                        attempts,
                        retry_after,
                    });
                }
            }
        }
    }
}

/// How long a server asks us to wait, from the first of these headers that it sent and that
/// parses:
///
/// - `retry-after-ms`: milliseconds (OpenAI's and Anthropic's SDKs read it);
/// - `retry-after`: delta-seconds or an HTTP date (RFC 9110);
/// - `x-ratelimit-reset`: when the rate limit resets, as a Unix time or seconds to wait (see
///   [`until_reset`]), or an HTTP date.
///
/// A date in the past means no wait.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(seconds) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(value) = header("retry-after") {
        if let Some(secs) = seconds(value) {
            return Some(Duration::from_secs_f64(secs));
        }
        if let Some(wait) = until_http_date(value) {
            return Some(wait);
        }
    }
    if let Some(value) = header("x-ratelimit-reset") {
        if let Some(n) = seconds(value) {
            return Some(until_reset(n));
        }
        if let Some(wait) = until_http_date(value) {
            return Some(wait);
        }
    }
    None
}

/// The wait until a rate limit's reset given as a number: a Unix time in seconds when it looks
/// like one (providers use both forms), else seconds to wait.
pub fn until_reset(value: f64) -> Duration {
    if value > 1_000_000_000.0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        Duration::try_from_secs_f64(value - now).unwrap_or_default()
    } else {
        Duration::try_from_secs_f64(value).unwrap_or_default()
    }
}

/// A non-negative, finite number of seconds (fractions allowed).
fn seconds(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// The wait until an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, or the obsolete forms).
fn until_http_date(value: &str) -> Option<Duration> {
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            jitter,
            deadline: None,
            max_retry_after: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_http_dates() {
        let secs = headers(&[("retry-after", "2")]);
        assert_eq!(retry_after(&secs), Some(Duration::from_secs(2)));
        let both = headers(&[("retry-after", "2"), ("retry-after-ms", "150")]);
        assert_eq!(retry_after(&both), Some(Duration::from_millis(150)));

        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&headers(&[("retry-after", &soon)])).unwrap();
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        let past = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        let rfc850 = headers(&[("retry-after", "Wednesday, 21-Oct-15 07:28:00 GMT")]);
        assert_eq!(retry_after(&rfc850), Some(Duration::ZERO));

        for nonsense in ["-1", "soon", "NaN", "inf"] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", nonsense)])),
                None,
                "{nonsense}"
            );
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn rate_limit_reset_is_a_delay_a_unix_time_or_a_date() {
        let delta = headers(&[("x-ratelimit-reset", "3")]);
        assert_eq!(retry_after(&delta), Some(Duration::from_secs(3)));
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(20);
        let at = headers(&[("x-ratelimit-reset", &unix.as_secs().to_string())]);
        let wait = retry_after(&at).unwrap();
        assert!(
            wait > Duration::from_secs(18) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        let past = headers(&[("x-ratelimit-reset", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        // Retry-After wins over the reset.
        let both = headers(&[("x-ratelimit-reset", "30"), ("retry-after", "1")]);
        assert_eq!(retry_after(&both), Some(Duration::from_secs(1)));
        assert_eq!(until_reset(1.0), Duration::from_secs(1));
        assert_eq!(until_reset(1_400_000_000.0), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_full_jitter_stays_below_it() {
        let exact = policy(Jitter::None);
        let expected = [100, 200, 400, 800, 800];
        for (retry, ms) in (1..).zip(expected) {
            assert_eq!(
                exact.backoff(retry),
                Duration::from_millis(ms),
                "retry {retry}"
            );
        }
        assert_eq!(exact.backoff(1000), Duration::from_millis(800));

        let jittered = policy(Jitter::Full);
        for retry in 1..=5 {
            let cap = exact.backoff(retry);
            let waits: Vec<_> = (0..200).map(|_| jittered.backoff(retry)).collect();
            assert!(waits.iter().all(|w| *w <= cap), "retry {retry}: {waits:?}");
            // Spread over the range, not stuck at one end.
            assert!(waits.iter().any(|w| *w < cap / 2), "retry {retry}");
            assert!(waits.iter().any(|w| *w > cap / 2), "retry {retry}");
        }
    }

    #[test]
    fn attempts_hints_and_the_deadline_bound_the_retries() {
        let p = policy(Jitter::None);
        assert_eq!(
            p.next(1, Duration::ZERO, None),
            Next::Retry(Duration::from_millis(100))
        );
        assert_eq!(
            p.next(2, Duration::ZERO, Some(Duration::from_secs(3))),
            Next::Retry(Duration::from_secs(3)),
            "the server's hint replaces the back-off"
        );
        assert_eq!(
            p.next(4, Duration::ZERO, None),
            Next::GiveUp(Duration::from_millis(800))
        );

        let deadline = RetryPolicy {
            deadline: Some(Duration::from_secs(10)),
            ..p
        };
        assert_eq!(
            deadline.next(1, Duration::from_secs(9), Some(Duration::from_secs(1))),
            Next::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            deadline.next(1, Duration::from_secs(9), Some(Duration::from_secs(2))),
            Next::GiveUp(Duration::from_secs(2)),
            "a hint past the deadline ends the call and is passed on"
        );
        assert_eq!(
            deadline.next(1, Duration::ZERO, Some(Duration::from_secs(3600))),
            Next::GiveUp(Duration::from_secs(3600))
        );
        assert_eq!(
            deadline.next(3, Duration::from_millis(9_700), None),
            Next::GiveUp(Duration::from_millis(400)),
            "the back-off counts against the deadline too"
        );

        let capped = RetryPolicy {
            max_retry_after: Some(Duration::from_secs(60)),
            ..p
        };
        assert_eq!(
            capped.next(1, Duration::ZERO, Some(Duration::from_secs(61))),
            Next::GiveUp(Duration::from_secs(61))
        );
        assert_eq!(
            capped.next(1, Duration::ZERO, Some(Duration::from_secs(60))),
            Next::Retry(Duration::from_secs(60))
        );
    }

    #[tokio::test]
    async fn run_retries_transient_failures_and_stops_at_permanent_ones() {
        let quick = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..policy(Jitter::Full)
        };
        let calls = AtomicU32::new(0);
        let value = quick
            .run(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(Failed::transient("busy", Some(Duration::ZERO))),
                    n => Ok(n),
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 2);

        let calls = AtomicU32::new(0);
        let gave_up = quick
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Failed::permanent("refused"))
            })
            .await
            .unwrap_err();
        assert_eq!((gave_up.error, gave_up.attempts), ("refused", 1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let gave_up = quick
            .run(|| async {
                Err::<(), _>(Failed::transient("busy", Some(Duration::from_millis(7))))
            })
            .await
            .unwrap_err();
        assert_eq!(gave_up.attempts, 4, "every attempt was made");
        assert_eq!(gave_up.retry_after, Duration::from_millis(7));
    }
}
