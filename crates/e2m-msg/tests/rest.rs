//! The REST binding: routes, statuses, and the path and query rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use e2m_keyid::{AppIdentity, Imsi, KeyId};
use e2m_msg::rest::{self, header};
use e2m_msg::{
    Deregistration, KeyRequest, Operation, ProblemCause, QueryError, Route, RouteError, SessionId,
    SubscriptionId, UeRef, ValueError,
};

fn request(identity: &str) -> KeyRequest {
    KeyRequest {
        session_id: SessionId::parse("AAAAAAAAAAAAAAAAAAAAs1").unwrap(),
        ue: UeRef::AppIdentity(AppIdentity::new(identity).unwrap()),
        key_id: KeyId::from_u32(0xae47_bf35),
    }
}

#[test]
fn every_route_and_its_status() {
    let s = SessionId::parse("Bq3vL9sKp2RtY7wZ1bN4cA").unwrap();
    let sub = "7042".parse::<SubscriptionId>().unwrap();
    let cases = [
        ("POST", "/e2m/v1/sessions".to_owned(), Route::Register, 201),
        (
            "DELETE",
            rest::session_path(&s).to_string(),
            Route::Deregister(Deregistration {
                session_id: s.copy_secret(),
            }),
            204,
        ),
        (
            "POST",
            "/e2m/v1/subscriptions".to_owned(),
            Route::Subscribe,
            201,
        ),
        (
            "DELETE",
            rest::subscription_path(&sub),
            Route::Unsubscribe(sub),
            204,
        ),
        (
            "POST",
            "/e2m/v1/notifications".to_owned(),
            Route::Notify,
            204,
        ),
        (
            "POST",
            "/e2m/v1/intermediate-keys".to_owned(),
            Route::PushIntermediateKey,
            204,
        ),
    ];
    for (method, target, route, status) in cases {
        let parsed = Route::parse(method, &target).unwrap();
        assert_eq!(parsed, route);
        assert_eq!(parsed.operation().success_status(), status);
        assert_eq!(parsed.operation().method().as_str(), method);
    }
    let fetch = Route::parse("GET", &request("a@b").to_target()).unwrap();
    // 200, not the seed's 201 (a GET creates nothing).
    assert_eq!(fetch.operation(), Operation::FetchKey);
    assert_eq!(Operation::FetchKey.success_status(), 200);
    assert!(Operation::FetchKey.response_is_secret());
    assert_eq!(header::NO_STORE, "no-store");
    assert_eq!(
        Deregistration { session_id: s }.to_target().as_str(),
        "/e2m/v1/sessions/Bq3vL9sKp2RtY7wZ1bN4cA"
    );
}

#[test]
fn key_request_targets() {
    let r = request("user+tag@iot.example.com");
    let target = r.to_target();
    assert_eq!(
        target.as_str(),
        "/e2m/v1/sessions/AAAAAAAAAAAAAAAAAAAAs1/keys?appIdentity=user%2Btag%40iot.example.com&keyId=ae47bf35"
    );
    assert_eq!(
        Route::parse("GET", &target),
        Ok(Route::FetchKey(request("user+tag@iot.example.com")))
    );
    // Parameter order is free; '@' may come unencoded; hex case is free.
    let parsed = Route::parse(
        "GET",
        "/e2m/v1/sessions/AAAAAAAAAAAAAAAAAAAAs1/keys?keyId=ae47bf35&appIdentity=user%2btag@iot.example.com",
    );
    assert_eq!(parsed, Ok(Route::FetchKey(r)));
    let by_imsi = KeyRequest {
        session_id: SessionId::parse("AAAAAAAAAAAAAAAAAAAAs1").unwrap(),
        ue: UeRef::Imsi(Imsi::new("001010123456789").unwrap()),
        key_id: KeyId::from_u32(1),
    };
    assert_eq!(
        by_imsi.to_target().as_str(),
        "/e2m/v1/sessions/AAAAAAAAAAAAAAAAAAAAs1/keys?imsi=001010123456789&keyId=00000001"
    );
    assert_eq!(
        Route::parse("GET", &by_imsi.to_target()),
        Ok(Route::FetchKey(by_imsi))
    );
    // Non-ASCII identities are percent-encoded as UTF-8.
    let t = request("capteur-é@exemple.fr").to_target();
    assert!(t.contains("capteur-%C3%A9%40exemple.fr"), "{}", t.as_str());
    assert!(Route::parse("GET", &t).is_ok());
}

#[test]
fn ambiguous_queries_are_refused() {
    let q = |query: &str| {
        Route::parse(
            "GET",
            &format!("/e2m/v1/sessions/AAAAAAAAAAAAAAAAAAAAs1/keys?{query}"),
        )
    };
    let bad =
        |query: &str, e: QueryError| assert_eq!(q(query), Err(RouteError::BadQuery(e)), "{query}");
    bad("appIdentity=a+b&keyId=ae47bf35", QueryError::BadCharacter);
    bad("appIdentity=a;b&keyId=ae47bf35", QueryError::BadCharacter);
    bad("appIdentity=a b&keyId=ae47bf35", QueryError::BadCharacter);
    bad(
        "appIdentity=a&appIdentity=b&keyId=ae47bf35",
        QueryError::DuplicateParameter,
    );
    bad(
        "appIdentity=a&keyId=ae47bf35&keyId=ae47bf35",
        QueryError::DuplicateParameter,
    );
    bad(
        "appIdentity=a&imsi=001010123456&keyId=ae47bf35",
        QueryError::UeNotExactlyOnce,
    );
    bad("keyId=ae47bf35", QueryError::UeNotExactlyOnce);
    bad("", QueryError::UeNotExactlyOnce);
    bad("appIdentity=a", QueryError::MissingKeyId);
    bad(
        "appIdentity=a&keyId=ae47bf35&x=1",
        QueryError::UnknownParameter,
    );
    bad("AppIdentity=a&keyId=ae47bf35", QueryError::UnknownParameter);
    bad("appIdentity=a&&keyId=ae47bf35", QueryError::BadPair);
    bad("appIdentity&keyId=ae47bf35", QueryError::BadPair);
    bad("appIdentity=&keyId=ae47bf35", QueryError::BadPair);
    bad(
        "appIdentity=a%2&keyId=ae47bf35",
        QueryError::BadPercentEncoding,
    );
    bad(
        "appIdentity=a%zz&keyId=ae47bf35",
        QueryError::BadPercentEncoding,
    );
    bad(
        "appIdentity=a%20b&keyId=ae47bf35",
        QueryError::BadValue(ValueError::Identity(e2m_keyid::IdentityError::Whitespace)),
    );
    bad(
        "appIdentity=a%FF&keyId=ae47bf35",
        QueryError::BadValue(ValueError::Identity(e2m_keyid::IdentityError::NotUtf8)),
    );
    bad(
        "appIdentity=a&keyId=AE47BF35",
        QueryError::BadValue(ValueError::KeyId(e2m_keyid::KeyIdError::NotLowercaseHex)),
    );
    bad(
        &format!("appIdentity={}&keyId=ae47bf35", "x".repeat(115)),
        QueryError::BadValue(ValueError::TooLong {
            max: 114,
            actual: 115,
        }),
    );
    assert!(q(&format!("appIdentity={}&keyId=ae47bf35", "x".repeat(114))).is_ok());
}

#[test]
fn paths_are_matched_exactly() {
    let err = |m: &str, t: &str| Route::parse(m, t).unwrap_err();
    assert_eq!(err("POST", "/e2m/v1/sessions/"), RouteError::BadTarget);
    assert_eq!(err("POST", "/e2m/v1//sessions"), RouteError::BadTarget);
    assert_eq!(err("DELETE", "/e2m/v1/sessions/.."), RouteError::BadTarget);
    assert_eq!(err("DELETE", "/e2m/v1/sessions/%73"), RouteError::BadTarget);
    assert_eq!(err("POST", "/e2m/v1/sessions#x"), RouteError::BadTarget);
    assert_eq!(
        err("POST", "https://emks.example/e2m/v1/sessions"),
        RouteError::BadTarget
    );
    assert_eq!(err("POST", "/e2m/v2/sessions"), RouteError::NotFound);
    assert_eq!(err("POST", "/e2m/v1"), RouteError::NotFound);
    assert_eq!(err("POST", "/e2m/v1/session"), RouteError::NotFound);
    assert_eq!(
        err("GET", "/e2m/v1/sessions/AAAAAAAAAAAAAAAAAAAAs1/keys/x"),
        RouteError::NotFound
    );
    assert_eq!(err("POST", "/e2m/v1/sessionsX"), RouteError::NotFound);
    assert_eq!(
        err("GET", "/e2m/v1/sessions"),
        RouteError::MethodNotAllowed { allow: "POST" }
    );
    assert_eq!(
        err("post", "/e2m/v1/sessions"),
        RouteError::MethodNotAllowed { allow: "POST" }
    );
    assert_eq!(
        err("GET", "/e2m/v1/sessions/s1"),
        RouteError::MethodNotAllowed { allow: "DELETE" }
    );
    assert_eq!(
        err("POST", "/e2m/v1/sessions?x=1"),
        RouteError::BadQuery(QueryError::Unexpected)
    );
    assert_eq!(
        err("DELETE", "/e2m/v1/sessions/s.1"),
        RouteError::BadId(ValueError::BadSessionId)
    );
    assert_eq!(
        err("DELETE", &format!("/e2m/v1/sessions/{}", "a".repeat(65))).cause(),
        ProblemCause::Malformed
    );
    assert_eq!(RouteError::NotFound.cause().status(), 404);
    assert_eq!(
        RouteError::MethodNotAllowed { allow: "POST" }
            .cause()
            .status(),
        405
    );
}
