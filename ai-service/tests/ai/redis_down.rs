//! A Redis that cannot be reached or does not answer: ai-service starts anyway, calls go on
//! without the shared cache within bounded waits, and the cache comes back with Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use service_runtime::redis_client::RedisTimeouts;
use service_runtime::testing::redis_url;
use tokio::net::{TcpListener, TcpStream};

use crate::fake_provider::*;
use crate::helpers::*;

/// A TCP gate in front of the test Redis: while closed it hangs up on every connection (Redis
/// "down"), while open it relays to Redis.
struct RedisGate {
    url: String,
    open: Arc<AtomicBool>,
}

impl RedisGate {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The same URL (credentials, database) with the gate's address for Redis's.
        let real = redis_url();
        let info = redis::IntoConnectionInfo::into_connection_info(real.as_str()).unwrap();
        let redis::ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
            panic!("TEST_REDIS_URL is not plain TCP");
        };
        let target = format!("{host}:{port}");
        let url = real.replacen(&target, &addr.to_string(), 1);
        let open = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut redis) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                    }
                });
            }
        });
        Self { url, open }
    }
}

fn quick() -> RedisTimeouts {
    RedisTimeouts {
        connect: Duration::from_millis(300),
        response: Duration::from_millis(300),
        retry_interval: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn redis_down_at_start_is_a_warning_and_the_cache_comes_back_with_it() {
    let fake = FakeProvider::start().await;
    let gate = RedisGate::start().await;
    let (mut config, dir) = sqlite_config(Some(anthropic(&fake)));
    config.redis_url = Some(gate.url.clone().into());
    config.cache.redis_prefix = format!("autocrea-test:{}:", uuid::Uuid::new_v4().simple());
    config.cache.redis_timeouts = quick();
    let mut app = spawn(config, Some(dir)).await;

    // Served without a cache: both calls reach the provider.
    for _ in 0..2 {
        let r = app
            .client
            .generate(req(generate("while redis is down")))
            .await
            .expect("served without Redis")
            .into_inner();
        assert!(!r.usage.unwrap().cached);
    }
    assert_eq!(fake.calls(), 2);

    gate.open.store(true, Ordering::SeqCst);
    tokio::time::sleep(quick().retry_interval * 2).await;
    let first = app
        .client
        .generate(req(generate("after redis came back")))
        .await
        .expect("first")
        .into_inner();
    assert!(!first.usage.unwrap().cached);
    let second = app
        .client
        .generate(req(generate("after redis came back")))
        .await
        .expect("second")
        .into_inner();
    assert!(second.usage.unwrap().cached, "answered from Redis again");
    assert_eq!(fake.calls(), 3);
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_a_call_at_most_its_timeouts() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let fake = FakeProvider::start().await;
    let (mut config, dir) = sqlite_config(Some(anthropic(&fake)));
    config.redis_url = Some(format!("redis://{addr}").into());
    config.cache.redis_timeouts = quick();
    let started = Instant::now();
    let mut app = spawn(config, Some(dir)).await;
    for _ in 0..3 {
        app.client
            .generate(req(generate("silent redis")))
            .await
            .expect("served without Redis");
    }
    // Start, plus one bounded connection attempt (three connect timeouts at most): later calls
    // skip Redis within its retry interval or wait one response timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.calls(), 3);
}
