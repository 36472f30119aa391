//! A Redis connection for state a service can do without for a while (a shared cache): every
//! wait is bounded (connect and response timeouts), a Redis that cannot be reached at start is a
//! warning rather than a failure, and while it is down callers skip it for a retry interval
//! instead of each waiting for it to fail again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::RwLock;

/// How long to wait for Redis, and how long to leave it alone after it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTimeouts {
    /// Establishing a connection (default 1 s).
    pub connect: Duration,
    /// One command's answer (default 1 s).
    pub response: Duration,
    /// After a failure, no command is sent for this long (default 5 s).
    pub retry_interval: Duration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(1),
            retry_interval: Duration::from_secs(5),
        }
    }
}

/// A connection to `client`'s server that reconnects by itself, with `timeouts`' connect and
/// response bounds and one retry: a Redis that is down or refuses the handshake fails at once,
/// and a service decides what to do without it, rather than holding a request.
pub async fn connection_manager(
    client: redis::Client,
    timeouts: &RedisTimeouts,
) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config).await
}

/// What a user of Redis does while it is down: said in the log when an outage starts (as an error
/// when `severe`), and `notify` is told when Redis goes down (`false`) and answers again (`true`).
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    /// What happens meanwhile, e.g. "going on without it until it answers".
    pub meanwhile: &'static str,
    /// Whether the outage costs users something (then logged as an error).
    pub severe: bool,
    /// Told of every change, e.g. to set a gauge.
    pub notify: fn(bool),
}

impl Default for Outage {
    fn default() -> Self {
        Self {
            meanwhile: "going on without it until it answers",
            severe: false,
            notify: |_| {},
        }
    }
}

/// A lazily connected, automatically reconnecting Redis connection; `purpose` names it in logs.
pub struct RedisClient {
    client: redis::Client,
    timeouts: RedisTimeouts,
    purpose: &'static str,
    outage: Outage,
    connection: RwLock<Option<ConnectionManager>>,
    /// While Redis is down: when to ask it again.
    retry_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisClient {
    // The client holds the URL, which may hold a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("purpose", &self.purpose)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// A connection to `client`'s server (from [`crate::redis_endpoint::RedisEndpoint::client`],
    /// which knows its TLS trust), not connected yet.
    pub fn new(client: redis::Client, timeouts: RedisTimeouts, purpose: &'static str) -> Self {
        Self {
            client,
            timeouts,
            purpose,
            outage: Outage::default(),
            connection: RwLock::new(None),
            retry_at: Mutex::new(None),
        }
    }

    /// Says `outage` in the log and to its hook while Redis is down.
    pub fn with_outage(mut self, outage: Outage) -> Self {
        self.outage = outage;
        self
    }

    /// Connects now, so that a misconfiguration shows in the start-up log. A Redis that does not
    /// answer is a warning and the next calls try again (`Ok(false)`); a server whose certificate
    /// the configured CA refuses is a misconfiguration no retry mends, and stops start-up.
    pub async fn connect_at_start(&self) -> anyhow::Result<bool> {
        let mut slot = self.connection.write().await;
        match self.connect().await {
            Ok(conn) => {
                *slot = Some(conn);
                tracing::info!(purpose = self.purpose, "connected to Redis");
                Ok(true)
            }
            Err(error) if refused_certificate(&error) => {
                Err(anyhow::Error::new(error).context(format!(
                    "Redis ({}) refused: its certificate does not chain to the configured CA \
                     (REDIS_CA_FILE) or the system's roots",
                    self.purpose
                )))
            }
            Err(error) => {
                self.failed(&error);
                Ok(false)
            }
        }
    }

    /// One bounded attempt to connect (`ConnectionManager` retries once on its own; the outer
    /// timeout bounds the whole attempt).
    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        let attempt = connection_manager(self.client.clone(), &self.timeouts);
        let wait = self.timeouts.connect.saturating_mul(3);
        tokio::time::timeout(wait, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting timed out",
                )))
            })
    }

    /// The connection, or `None` while Redis is down (then the caller goes on without it).
    pub async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(conn) = self.connection.read().await.as_ref() {
            return self.worth_asking().then(|| conn.clone());
        }
        if !self.worth_asking() {
            return None;
        }
        let mut slot = self.connection.write().await;
        if let Some(conn) = slot.as_ref() {
            return Some(conn.clone());
        }
        match self.connect().await {
            Ok(conn) => {
                *slot = Some(conn.clone());
                self.answered();
                Some(conn)
            }
            Err(error) => {
                self.failed(&error);
                None
            }
        }
    }

    /// Marks a command as answered: Redis is up (again).
    pub fn answered(&self) {
        let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        if retry_at.take().is_some() {
            (self.outage.notify)(true);
            tracing::info!(purpose = self.purpose, "Redis answers again");
        }
    }

    /// Marks a command as failed: callers skip Redis for the retry interval. Logged once per
    /// outage.
    pub fn failed(&self, error: &redis::RedisError) {
        let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        if retry_at.is_none() {
            (self.outage.notify)(false);
            let retry_in_ms =
                u64::try_from(self.timeouts.retry_interval.as_millis()).unwrap_or(u64::MAX);
            let meanwhile = self.outage.meanwhile;
            if self.outage.severe {
                tracing::error!(purpose = self.purpose, error = %error, retry_in_ms, "Redis unavailable; {meanwhile}");
            } else {
                tracing::warn!(purpose = self.purpose, error = %error, retry_in_ms, "Redis unavailable; {meanwhile}");
            }
        }
        *retry_at = Some(Instant::now() + self.timeouts.retry_interval);
    }

    fn worth_asking(&self) -> bool {
        let retry_at = *self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        retry_at.is_none_or(|at| Instant::now() >= at)
    }
}

/// Whether `error` is the TLS handshake refusing the server's certificate (rustls'
/// `InvalidCertificate` somewhere in its cause chain).
fn refused_certificate(error: &redis::RedisError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        cause = e.source();
    }
    // Some layers flatten the chain into text.
    error.to_string().contains("invalid peer certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> RedisTimeouts {
        RedisTimeouts {
            connect: Duration::from_millis(200),
            response: Duration::from_millis(200),
            retry_interval: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_skipped_until_the_retry_interval_ends() {
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = RedisClient::new(
            client_of(&format!("redis://127.0.0.1:{port}")),
            quick(),
            "test",
        );
        assert!(!client.connect_at_start().await.unwrap());
        let started = Instant::now();
        assert!(client.connection().await.is_none());
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "skipped without trying: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_redis_that_never_answers_costs_at_most_the_timeouts() {
        // Accepts connections and never says a word.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let client = RedisClient::new(client_of(&format!("redis://{addr}")), quick(), "test");
        let started = Instant::now();
        assert!(!client.connect_at_start().await.unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    fn client_of(url: &str) -> redis::Client {
        crate::redis_endpoint::RedisEndpoint::new(url)
            .client()
            .unwrap()
    }

    #[test]
    fn debug_never_shows_the_url() {
        let client = RedisClient::new(
            client_of("redis://:hunter2@cache:6379"),
            RedisTimeouts::default(),
            "test",
        );
        let shown = format!("{client:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
