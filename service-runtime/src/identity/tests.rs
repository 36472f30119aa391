use std::time::Duration;

use super::*;

fn who(user: &str) -> OnBehalfOf {
    OnBehalfOf {
        user_id: user.to_string(),
        auth_method: "api_key".to_string(),
        scopes: vec!["projects".to_string()],
        request_id: Some("req-1".to_string()),
        ..OnBehalfOf::default()
    }
}

fn pair() -> (AssertionSigner, VerifyingKeys) {
    let key = SigningKey::generate();
    (
        AssertionSigner::new(&key),
        VerifyingKeys::from(key.verifying_key().clone()),
    )
}

#[test]
fn an_assertion_for_the_service_verifies_with_what_it_says() {
    let (signer, keys) = pair();
    let token = signer
        .mint(
            &who("ann"),
            &[audience::DEPLOY, audience::PROJECT],
            ASSERTION_LIFETIME,
        )
        .unwrap();
    for service in [audience::DEPLOY, audience::PROJECT] {
        let caller = CallerVerifier::new(&keys, service).verify(&token).unwrap();
        assert_eq!(caller.user_id, "ann");
        assert_eq!(caller.auth_method, "api_key");
        assert_eq!(caller.scopes, ["projects"]);
        assert_eq!(caller.request_id.as_deref(), Some("req-1"));
        assert_eq!(caller.project_grant, None);
        assert!(!format!("{caller:?}").contains(&token));
    }
}

#[test]
fn expired_foreign_and_misaddressed_assertions_are_refused() {
    let (signer, keys) = pair();
    let verifier = CallerVerifier::new(&keys, audience::PROJECT);
    let mut claims = who("ann").claims(&[audience::PROJECT], ASSERTION_LIFETIME, None);
    claims.exp = now_secs() - 60;
    let expired = signer.sign(&claims).unwrap();
    assert_eq!(verifier.verify(&expired).unwrap_err(), Refusal::Expired);

    let (other, _) = pair();
    let foreign = other
        .mint(&who("ann"), &[audience::PROJECT], ASSERTION_LIFETIME)
        .unwrap();
    assert_eq!(
        verifier.verify(&foreign).unwrap_err(),
        Refusal::BadSignature
    );

    let for_ai = signer
        .mint(&who("ann"), &[audience::AI], ASSERTION_LIFETIME)
        .unwrap();
    assert_eq!(
        verifier.verify(&for_ai).unwrap_err(),
        Refusal::WrongAudience(audience::PROJECT)
    );

    let mut claims = who("ann").claims(&[audience::PROJECT], ASSERTION_LIFETIME, None);
    claims.iss = "someone-else".to_string();
    let wrong_issuer = signer.sign(&claims).unwrap();
    assert!(matches!(
        verifier.verify(&wrong_issuer).unwrap_err(),
        Refusal::Invalid(_)
    ));
    assert!(matches!(
        verifier.verify("not.a.jwt").unwrap_err(),
        Refusal::Invalid(_)
    ));
}

#[test]
fn an_hs256_token_is_not_an_assertion() {
    let (_, keys) = pair();
    let claims = who("ann").claims(&[audience::PROJECT], ASSERTION_LIFETIME, None);
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"a secret anyone may guess").unwrap(),
    )
    .unwrap();
    let refused = CallerVerifier::new(&keys, audience::PROJECT)
        .verify(&hs256)
        .unwrap_err();
    assert!(matches!(refused, Refusal::Invalid(_)), "{refused:?}");
}

#[test]
fn during_a_rotation_both_keys_verify() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let keys = VerifyingKeys::parse(&format!(
        "{}, {}",
        old.verifying_key().to_base64(),
        new.verifying_key().to_base64()
    ))
    .unwrap();
    let verifier = CallerVerifier::new(&keys, audience::AI);
    for key in [&old, &new] {
        let token = AssertionSigner::new(key)
            .mint(&who("ann"), &[audience::AI], ASSERTION_LIFETIME)
            .unwrap();
        assert_eq!(verifier.verify(&token).unwrap().user_id, "ann");
    }
}

#[test]
fn a_grant_names_its_project() {
    let (signer, keys) = pair();
    let claims = who("ann").claims(
        &[audience::PROJECT],
        Duration::from_secs(3600),
        Some("p1".to_string()),
    );
    let grant = signer.sign(&claims).unwrap();
    let caller = CallerVerifier::new(&keys, audience::PROJECT)
        .verify(&grant)
        .unwrap();
    assert_eq!(caller.project_grant.as_deref(), Some("p1"));
    assert!(
        CallerVerifier::new(&keys, audience::DEPLOY)
            .verify(&grant)
            .is_err()
    );
}
