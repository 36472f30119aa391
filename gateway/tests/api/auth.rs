//! Every way a token can be wrong gets 401 problem+json with `WWW-Authenticate`; good RS256, ES256 and
//! EdDSA tokens from a JWKS endpoint (Clerk's form) and HS256 development tokens get in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use gateway::config::AuthConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::helpers::*;

const ISSUER: &str = "https://clerk.example.test";
const APP_ORIGIN: &str = "https://app.example.test";

struct Keys {
    rsa_pem: String,
    rsa_public_pem: String,
    rsa_jwk: Value,
    ec_der: Vec<u8>,
    ec_jwk: Value,
}

/// The RS256 test key pair is a fixed fixture (`fixtures/README.md`); the ES256 one is made per
/// run (ring makes it in microseconds).
fn keys() -> Keys {
    let rsa_jwk: Value =
        serde_json::from_str(include_str!("fixtures/test-rsa-public.jwk.json")).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let ec_jwk = json!({
        "kid": "ec-1", "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
        "x": B64URL.encode(&point[1..33]),
        "y": B64URL.encode(&point[33..65]),
    });
    Keys {
        rsa_pem: include_str!("fixtures/test-rsa-private.pem").to_string(),
        rsa_public_pem: include_str!("fixtures/test-rsa-public.pem").to_string(),
        rsa_jwk,
        ec_der: pkcs8.as_ref().to_vec(),
        ec_jwk,
    }
}

/// A JWKS endpoint whose key set a test can change, counting fetches.
struct Jwks {
    _server: Server,
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    fn start(keys: Vec<Value>) -> Self {
        let set = Arc::new(Mutex::new(json!({ "keys": keys })));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (set2, fetches2) = (set.clone(), fetches.clone());
        let server = serve_app(move |app| {
            let (set, fetches) = (set2.clone(), fetches2.clone());
            app.route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    let body = set.lock().unwrap().clone();
                    fetches.fetch_add(1, Ordering::SeqCst);
                    async move { HttpResponse::Ok().json(body) }
                }),
            );
        });
        Self {
            url: format!("http://{}/.well-known/jwks.json", server.addr),
            _server: server,
            keys: set,
            fetches,
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({
        "sub": sub, "iss": ISSUER, "azp": APP_ORIGIN,
        "iat": now() - 10, "nbf": now() - 10, "exp": now() + 300,
    })
}

fn rs256(keys: &Keys, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(keys.rsa_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn es256(keys: &Keys, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&keys.ec_der)).unwrap()
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    )
}

async fn jwks_stack(jwks_url: &str) -> Stack {
    let url = jwks_url.to_string();
    Stack::start_with(Db::Sqlite, move |config| {
        config.limits = generous_limits();
        config.auth = AuthConfig {
            jwks_url: Some(url),
            issuer: Some(ISSUER.into()),
            authorized_parties: vec![APP_ORIGIN.into()],
            jwks_min_refresh: Duration::from_secs(30),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            ..AuthConfig::defaults()
        };
    })
    .await
}

async fn call(stack: &Stack, token: &str) -> reqwest::Response {
    stack
        .gateway
        .http
        .get(stack.gateway.url("/api/projects"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn assert_unauthorized(response: reqwest::Response, why: &str) {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{why}: no WWW-Authenticate"))
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{why}: {challenge}");
    let body = assert_problem(response, 401).await;
    assert_eq!(
        body["type"], "https://autocrea.dev/problems/unauthorized",
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_tokens_are_verified_and_every_bad_one_is_refused() {
    let keys = keys();
    let jwks = Jwks::start(vec![keys.rsa_jwk.clone(), keys.ec_jwk.clone()]);
    let stack = jwks_stack(&jwks.url).await;
    let user = unique_user("clerk");

    // Good tokens, both algorithms, and the Clerk __session cookie.
    assert_eq!(
        call(&stack, &rs256(&keys, "rsa-1", &claims(&user)))
            .await
            .status(),
        200
    );
    assert_eq!(
        call(&stack, &es256(&keys, &claims(&user))).await.status(),
        200
    );
    let cookie = stack
        .gateway
        .http
        .get(stack.gateway.url("/api/projects"))
        .header(
            "cookie",
            format!("__session={}", rs256(&keys, "rsa-1", &claims(&user))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), 200);

    let mut expired = claims(&user);
    expired["exp"] = json!(now() - 60);
    let mut not_yet = claims(&user);
    not_yet["nbf"] = json!(now() + 120);
    let mut issued_in_future = claims(&user);
    issued_in_future["iat"] = json!(now() + 120);
    let mut wrong_issuer = claims(&user);
    wrong_issuer["iss"] = json!("https://evil.example.test");
    let mut no_azp = claims(&user);
    no_azp.as_object_mut().unwrap().remove("azp");
    let mut wrong_azp = claims(&user);
    wrong_azp["azp"] = json!("https://evil.example.test");
    let mut no_exp = claims(&user);
    no_exp.as_object_mut().unwrap().remove("exp");
    // jsonwebtoken checks `iss` only when present: with AUTH_ISSUER set it must be required.
    let mut no_iss = claims(&user);
    no_iss.as_object_mut().unwrap().remove("iss");

    let good = rs256(&keys, "rsa-1", &claims(&user));
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_claims = B64URL.encode(claims("someone_else").to_string());
    parts[1] = &forged_claims;
    let tampered = parts.join(".");

    // Algorithm confusion: HS256 "signed" with the RSA public key as the secret.
    let mut confused_header = Header::new(Algorithm::HS256);
    confused_header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &confused_header,
        &claims(&user),
        &EncodingKey::from_secret(keys.rsa_public_pem.as_bytes()).unwrap(),
    )
    .unwrap();

    let cases: Vec<(&str, String)> = vec![
        ("expired", rs256(&keys, "rsa-1", &expired)),
        ("not yet valid", rs256(&keys, "rsa-1", &not_yet)),
        (
            "issued in the future",
            rs256(&keys, "rsa-1", &issued_in_future),
        ),
        ("wrong issuer", rs256(&keys, "rsa-1", &wrong_issuer)),
        ("missing issuer", rs256(&keys, "rsa-1", &no_iss)),
        ("missing azp", rs256(&keys, "rsa-1", &no_azp)),
        ("wrong azp", rs256(&keys, "rsa-1", &wrong_azp)),
        ("missing exp", rs256(&keys, "rsa-1", &no_exp)),
        ("unknown kid", rs256(&keys, "rsa-unknown", &claims(&user))),
        ("tampered payload", tampered),
        (
            "alg none",
            unsigned(&json!({"alg": "none", "typ": "JWT"}), &claims(&user)),
        ),
        (
            "alg None",
            unsigned(&json!({"alg": "None", "kid": "rsa-1"}), &claims(&user)),
        ),
        ("algorithm confusion", confused),
        ("malformed", "not.a.jwt".into()),
        ("garbage", "abc".into()),
    ];
    for (why, token) in cases {
        assert_unauthorized(call(&stack, &token).await, why).await;
    }

    let missing = stack
        .gateway
        .http
        .get(stack.gateway.url("/api/projects"))
        .send()
        .await
        .unwrap();
    assert_unauthorized(missing, "no credentials").await;
    let basic = stack
        .gateway
        .http
        .get(stack.gateway.url("/api/projects"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_unauthorized(basic, "basic auth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_fetched_once_on_unknown_kid() {
    let keys = keys();
    let jwks = Jwks::start(vec![keys.ec_jwk.clone()]);
    let stack = jwks_stack(&jwks.url).await;
    let user = unique_user("rotate");

    assert_eq!(
        call(&stack, &es256(&keys, &claims(&user))).await.status(),
        200
    );
    assert_eq!(
        call(&stack, &es256(&keys, &claims(&user))).await.status(),
        200
    );
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "keys are cached");

    // The issuer rotates in a new RSA key: the first token with its kid triggers one refetch.
    *jwks.keys.lock().unwrap() = json!({ "keys": [keys.ec_jwk.clone(), keys.rsa_jwk.clone()] });
    assert_eq!(
        call(&stack, &rs256(&keys, "rsa-1", &claims(&user)))
            .await
            .status(),
        200
    );
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

    // A flood of unknown kids does not turn into a flood of fetches.
    for _ in 0..5 {
        let response = call(&stack, &rs256(&keys, "nope", &claims(&user))).await;
        assert_unauthorized(response, "unknown kid").await;
    }
    assert!(
        jwks.fetches.load(Ordering::SeqCst) <= 3,
        "refetches are throttled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_development_tokens() {
    let stack = Stack::start(Db::Sqlite).await;
    let user = unique_user("dev");
    assert_eq!(call(&stack, &token(&user)).await.status(), 200);
    let wrong_secret = gateway::auth::issue_dev_token(
        "another-secret-that-is-at-least-32-bytes",
        &user,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_unauthorized(call(&stack, &wrong_secret).await, "wrong secret").await;
    // With no JWKS configured, RS256 tokens are refused outright.
    let keys = keys();
    assert_unauthorized(
        call(&stack, &rs256(&keys, "rsa-1", &claims(&user))).await,
        "rs256 without jwks",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_audience_is_required_and_algorithms_are_an_allow_list() {
    let keys = keys();
    let jwks = Jwks::start(vec![keys.rsa_jwk.clone(), keys.ec_jwk.clone()]);
    let url = jwks.url.clone();
    // RS256 alone, as Clerk signs (the default), and an audience.
    let stack = Stack::start_with(Db::Sqlite, move |config| {
        config.limits = generous_limits();
        config.auth = AuthConfig {
            jwks_url: Some(url),
            issuer: Some(ISSUER.into()),
            audience: Some("autocrea-api".into()),
            ..AuthConfig::defaults()
        };
    })
    .await;
    let user = unique_user("aud");
    let mut with_aud = claims(&user);
    with_aud["aud"] = json!("autocrea-api");
    assert_eq!(
        call(&stack, &rs256(&keys, "rsa-1", &with_aud))
            .await
            .status(),
        200
    );
    let mut wrong_aud = claims(&user);
    wrong_aud["aud"] = json!("another-api");
    assert_unauthorized(
        call(&stack, &rs256(&keys, "rsa-1", &wrong_aud)).await,
        "wrong audience",
    )
    .await;
    let no_aud = assert_problem(
        call(&stack, &rs256(&keys, "rsa-1", &claims(&user))).await,
        401,
    )
    .await;
    assert!(
        no_aud["detail"].as_str().unwrap().contains("`aud`"),
        "{no_aud}"
    );
    // ES256 is a good signature by a key of the set, but not an accepted algorithm here.
    assert_unauthorized(
        call(&stack, &es256(&keys, &with_aud)).await,
        "ES256 not listed",
    )
    .await;
}

/// A JWKS endpoint that answers the first fetch and then hangs until released.
struct StallingJwks {
    _server: Server,
    url: String,
    fetches: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
}

impl StallingJwks {
    fn start(keys: Vec<Value>) -> Self {
        let body = json!({ "keys": keys });
        let fetches = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (fetches2, release2) = (fetches.clone(), release.clone());
        let server = serve_app(move |app| {
            let (body, fetches, release) = (body.clone(), fetches2.clone(), release2.clone());
            app.route(
                "/jwks",
                web::get().to(move || {
                    let (body, fetches, release) = (body.clone(), fetches.clone(), release.clone());
                    async move {
                        if fetches.fetch_add(1, Ordering::SeqCst) > 0 {
                            release.notified().await;
                        }
                        HttpResponse::Ok().json(body)
                    }
                }),
            );
        });
        Self {
            url: format!("http://{}/jwks", server.addr),
            _server: server,
            fetches,
            release,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_key_set_is_refreshed_without_making_requests_wait() {
    let keys = keys();
    let jwks = StallingJwks::start(vec![keys.rsa_jwk.clone()]);
    let url = jwks.url.clone();
    let stack = Stack::start_with(Db::Sqlite, move |config| {
        config.limits = generous_limits();
        config.auth = AuthConfig {
            jwks_url: Some(url),
            issuer: Some(ISSUER.into()),
            jwks_cache_ttl: Duration::from_secs(1),
            jwks_min_refresh: Duration::from_secs(1),
            ..AuthConfig::defaults()
        };
    })
    .await;
    let user = unique_user("stale");
    let token = rs256(&keys, "rsa-1", &claims(&user));
    assert_eq!(call(&stack, &token).await.status(), 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);

    // Let the set go stale; from now on the issuer hangs.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..3 {
        let answered = tokio::time::timeout(Duration::from_secs(4), call(&stack, &token))
            .await
            .expect("a request with a known kid waited on the JWKS fetch");
        assert_eq!(answered.status(), 200);
    }
    // One background refresh is under way (and hanging), not one per request.
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
    jwks.release.notify_waiters();
}

#[tokio::test]
async fn unsafe_authentication_settings_are_start_up_errors() {
    let secret = "a-real-random-secret-9f8e7d6c5b4a3210fedcba";
    let both = AuthConfig {
        jwks_url: Some("https://clerk.example.test/.well-known/jwks.json".into()),
        ..AuthConfig::hs256(secret)
    };
    let error = both.validate().unwrap_err().to_string();
    assert!(
        error.contains("AUTH_HS256_SECRET") && error.contains("AUTH_DEV_MODE"),
        "{error}"
    );
    let on_purpose = AuthConfig {
        dev_mode: true,
        ..both
    };
    on_purpose.validate().unwrap();

    for placeholder in [
        // The value .env.example used to ship.
        "dev-only-secret-change-me-0123456789abcdef",
        "please-change-me-to-a-random-string-of-32-bytes",
        "your-secret-here-your-secret-here-your-secret",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let error = AuthConfig::hs256(placeholder)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("AUTH_HS256_SECRET"),
            "{placeholder}: {error}"
        );
    }
    AuthConfig::hs256(secret).validate().unwrap();

    // And the gateway refuses to start with them.
    let config = gateway::Config::new(AuthConfig::hs256(
        "dev-only-secret-change-me-0123456789abcdef",
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = gateway::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("published example"), "{error}");
}

#[tokio::test]
async fn no_authentication_configured_is_a_start_up_error() {
    let config = gateway::Config::new(AuthConfig::defaults());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = gateway::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("AUTH_JWKS_URL"), "{error}");
    let short = AuthConfig::hs256("short");
    assert!(
        short
            .validate()
            .unwrap_err()
            .to_string()
            .contains("AUTH_HS256_SECRET")
    );
}

/// EdDSA (Ed25519 keys in the JWKS, `kty: OKP`) goes through the same crypto backend as
/// everything else; a token signed by another Ed25519 key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_tokens_from_the_jwks_are_verified() {
    use ring::signature::Ed25519KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let ed_pair = |kid: &str| {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({
            "kid": kid, "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "x": B64URL.encode(pair.public_key().as_ref()),
        });
        (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk)
    };
    let (key, jwk) = ed_pair("ed-1");
    let (other_key, _) = ed_pair("ed-1");
    let jwks = Jwks::start(vec![jwk]);
    let url = jwks.url.clone();
    let stack = Stack::start_with(Db::Sqlite, move |config| {
        config.limits = generous_limits();
        config.auth = AuthConfig {
            jwks_url: Some(url),
            issuer: Some(ISSUER.into()),
            authorized_parties: vec![APP_ORIGIN.into()],
            algorithms: vec![Algorithm::EdDSA],
            ..AuthConfig::defaults()
        };
    })
    .await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    let user = unique_user("ed");
    let good = jsonwebtoken::encode(&header, &claims(&user), &key).unwrap();
    assert_eq!(call(&stack, &good).await.status(), 200);
    let forged = jsonwebtoken::encode(&header, &claims(&user), &other_key).unwrap();
    assert_unauthorized(call(&stack, &forged).await, "another Ed25519 key").await;
}
