//! Allowed ranges and the last-use address: what the issuer checks and records, on
//! `MemoryStore` with a settable clock.

use apitoken::http::{code, status};
use apitoken::{
    AllowedCidrs, Cidr, Creator, EnvironmentId, Error, IssueRequest, ManualClock, Note, Principal,
    Scope, Scopes, TokenIssuer, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use rand::SeedableRng;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::Counting;
use uuid::Uuid;

mod support;

fn start() -> DateTime<Utc> {
    "2026-03-01T12:00:00.123456Z".parse().unwrap()
}

fn env(n: u128) -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(n))
}

fn alice() -> Creator {
    Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce)))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn ranges(text: &str) -> AllowedCidrs {
    AllowedCidrs::parse(text).unwrap()
}

fn request(note: &str) -> IssueRequest {
    IssueRequest::new(Note::new(note).unwrap()).with_scopes([
        Scope::ENVIRONMENT_API_TOKENS_READ,
        Scope::ENVIRONMENT_API_TOKENS_WRITE,
    ])
}

struct Setup {
    issuer: TokenIssuer<Arc<Counting>>,
    store: Arc<Counting>,
    clock: ManualClock,
}

fn setup() -> Setup {
    let store = Arc::new(Counting::default());
    let clock = ManualClock::new(start());
    let issuer = TokenIssuer::builder(store.clone())
        .clock(clock.clone())
        .rng(rand::rngs::StdRng::seed_from_u64(11))
        .last_use_interval(Some(Duration::from_secs(60)))
        .build();
    Setup {
        issuer,
        store,
        clock,
    }
}

impl Setup {
    async fn issue(&self, request: IssueRequest) -> apitoken::IssuedToken {
        self.issuer.issue(env(1), alice(), request).await.unwrap()
    }

    async fn last_use(&self, id: apitoken::TokenId) -> (Option<DateTime<Utc>>, Option<IpAddr>) {
        let token = self
            .issuer
            .get(env(1), support::operator(), id)
            .await
            .unwrap();
        (token.last_used_at, token.last_used_ip)
    }

    fn writes(&self) -> usize {
        self.store.last_use_writes.load(Ordering::SeqCst)
    }
}

fn refused_from(result: Result<Principal, Error>) -> Option<IpAddr> {
    match result {
        Err(Error::IpNotAllowed { client, .. }) => client,
        other => panic!("expected ip_not_allowed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_with_ranges_authenticates_only_from_inside_them() {
    let s = setup();
    let issued = s
        .issue(request("office").allowed_from(ranges("10.0.0.0/8 192.0.2.7 2001:db8::/32")))
        .await;
    assert_eq!(
        issued.token.allowed_cidrs,
        Some(ranges("10.0.0.0/8, 192.0.2.7/32, 2001:db8::/32"))
    );
    let secret = issued.raw.expose_secret();
    for inside in [
        "10.0.0.0",
        "10.255.255.255",
        "192.0.2.7",
        "2001:db8::1",
        "2001:db8:ffff:ffff::",
    ] {
        let who = s.issuer.authenticate_from(secret, ip(inside)).await;
        assert_eq!(who.unwrap().token_id(), issued.token.id, "{inside}");
    }
    for outside in [
        "11.0.0.0",
        "9.255.255.255",
        "192.0.2.8",
        "2001:db9::1",
        "::1",
        "127.0.0.1",
    ] {
        let refused = s.issuer.authenticate_from(secret, ip(outside)).await;
        assert_eq!(refused_from(refused), Some(ip(outside)), "{outside}");
    }
    let refused = s
        .issuer
        .authenticate_from(secret, ip("203.0.113.5"))
        .await
        .unwrap_err();
    assert_eq!(status(&refused), 403);
    assert_eq!(code(&refused), Some("ip_not_allowed"));
    assert!(refused.is_forbidden() && !refused.is_unauthenticated());
    let message = refused.to_string();
    assert!(message.contains("203.0.113.5"), "{message}");
    assert!(!message.contains(secret), "{message}");
}

#[tokio::test]
async fn ipv4_mapped_addresses_count_as_ipv4_and_are_recorded_so() {
    let s = setup();
    let v4 = s
        .issue(request("v4").allowed_from(ranges("10.0.0.0/8")))
        .await;
    let secret = v4.raw.expose_secret();
    s.issuer
        .authenticate_from(secret, ip("::ffff:10.1.2.3"))
        .await
        .unwrap();
    assert_eq!(
        s.last_use(v4.token.id).await,
        (Some(start()), Some(ip("10.1.2.3"))),
        "the mapped address is recorded as the IPv4 address it is"
    );
    let refused = s
        .issuer
        .authenticate_from(secret, ip("::ffff:11.1.2.3"))
        .await;
    assert_eq!(refused_from(refused), Some(ip("11.1.2.3")));
    // An IPv6 range does not take IPv4 clients, however the socket wrote them.
    let v6 = s.issue(request("v6").allowed_from(ranges("::/0"))).await;
    let refused = s
        .issuer
        .authenticate_from(v6.raw.expose_secret(), ip("::ffff:10.1.2.3"))
        .await;
    assert_eq!(refused_from(refused), Some(ip("10.1.2.3")));
    s.issuer
        .authenticate_from(v6.raw.expose_secret(), ip("2001:db8::5"))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_an_address_a_token_with_ranges_fails_closed() {
    let s = setup();
    let restricted = s
        .issue(request("office").allowed_from(ranges("0.0.0.0/0 ::/0")))
        .await;
    let secret = restricted.raw.expose_secret();
    assert_eq!(refused_from(s.issuer.authenticate(secret).await), None);
    let header = format!("Bearer {secret}");
    assert_eq!(
        refused_from(s.issuer.authenticate_header(&header).await),
        None
    );
    assert_eq!(
        refused_from(
            s.issuer
                .authorize(secret, env(1), &[Scope::ENVIRONMENT_API_TOKENS_READ])
                .await
        ),
        None
    );
    let message = s.issuer.authenticate(secret).await.unwrap_err().to_string();
    assert!(message.contains("authenticate_from"), "{message}");
    // The same token from any address passes; one without ranges passes without one.
    s.issuer
        .authenticate_header_from(&header, ip("198.51.100.1"))
        .await
        .unwrap();
    s.issuer
        .authorize_from(
            secret,
            ip("2001:db8::1"),
            env(1),
            &[Scope::ENVIRONMENT_API_TOKENS_READ],
        )
        .await
        .unwrap();
    let open = s.issue(request("anywhere")).await;
    assert!(open.token.allowed_cidrs.is_none());
    s.issuer
        .authenticate(open.raw.expose_secret())
        .await
        .unwrap();
    s.issuer
        .authenticate_from(open.raw.expose_secret(), ip("203.0.113.1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_invalid_token_is_a_401_wherever_it_comes_from() {
    let s = setup();
    let expiring = s
        .issue(
            request("short")
                .allowed_from(ranges("10.0.0.0/8"))
                .expires_at(start() + TimeDelta::hours(1)),
        )
        .await;
    let revoked = s
        .issue(request("revoked").allowed_from(ranges("10.0.0.0/8")))
        .await;
    s.issuer
        .revoke(env(1), support::operator(), revoked.token.id)
        .await
        .unwrap();
    let e = s
        .issuer
        .authenticate_from(revoked.raw.expose_secret(), ip("192.0.2.1"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Revoked { .. }), "{e:?}");
    s.clock.advance(TimeDelta::hours(2));
    let e = s
        .issuer
        .authenticate_from(expiring.raw.expose_secret(), ip("192.0.2.1"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e:?}");
    assert_eq!(status(&e), 401);
}

#[tokio::test]
async fn the_last_use_address_is_recorded_with_its_time_under_the_throttle() {
    let s = setup();
    let issued = s.issue(request("ci")).await;
    let secret = issued.raw.expose_secret();
    assert_eq!(s.last_use(issued.token.id).await, (None, None));
    s.issuer
        .authenticate_from(secret, ip("198.51.100.7"))
        .await
        .unwrap();
    assert_eq!(s.writes(), 1);
    // Within the interval: no write, whatever the address.
    s.clock.advance(TimeDelta::seconds(30));
    for from in ["2001:db8::1", "203.0.113.9"] {
        s.issuer.authenticate_from(secret, ip(from)).await.unwrap();
    }
    assert_eq!(s.writes(), 1);
    assert_eq!(
        s.last_use(issued.token.id).await,
        (Some(start()), Some(ip("198.51.100.7"))),
        "the recorded address is the one of the recorded use"
    );
    s.clock.advance(TimeDelta::seconds(30));
    s.issuer
        .authenticate_from(secret, ip("2001:db8::2"))
        .await
        .unwrap();
    assert_eq!(s.writes(), 2);
    assert_eq!(
        s.last_use(issued.token.id).await,
        (
            Some(start() + TimeDelta::seconds(60)),
            Some(ip("2001:db8::2"))
        )
    );
    // A use without an address (a job calling `authenticate`) records its time alone.
    s.clock.advance(TimeDelta::seconds(60));
    s.issuer.authenticate(secret).await.unwrap();
    assert_eq!(
        s.last_use(issued.token.id).await,
        (Some(start() + TimeDelta::seconds(120)), None)
    );
}

#[tokio::test]
async fn a_refused_address_records_no_use() {
    let s = setup();
    let issued = s
        .issue(request("office").allowed_from(ranges("10.0.0.0/8")))
        .await;
    for _ in 0..3 {
        let refused = s
            .issuer
            .authenticate_from(issued.raw.expose_secret(), ip("192.0.2.1"))
            .await;
        refused_from(refused);
    }
    assert_eq!(s.writes(), 0);
    assert_eq!(s.last_use(issued.token.id).await, (None, None));
}

/// A token creating a token (delegation) passes its ranges on as an upper bound.
#[tokio::test]
async fn a_delegated_token_narrows_its_creators_ranges_and_never_widens_them() {
    let s = setup();
    let parent = s
        .issue(request("parent").allowed_from(ranges("10.0.0.0/8 2001:db8::/32")))
        .await;
    let caller = s
        .issuer
        .authenticate_from(parent.raw.expose_secret(), ip("10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(
        caller.allowed_cidrs(),
        Some(&ranges("10.0.0.0/8 2001:db8::/32"))
    );

    // No list asked: the creator's.
    let inherited = s
        .issuer
        .issue(env(1), caller.clone(), request("inherits"))
        .await
        .unwrap();
    assert_eq!(
        inherited.token.allowed_cidrs,
        Some(ranges("10.0.0.0/8 2001:db8::/32"))
    );
    // Narrower ranges inside the creator's, equal ones too.
    let narrowed = s
        .issuer
        .issue(
            env(1),
            caller.clone(),
            request("narrower").allowed_from(ranges("10.1.0.0/16 10.0.0.0/8 2001:db8:1::/48")),
        )
        .await
        .unwrap();
    assert_eq!(
        narrowed.token.allowed_cidrs,
        Some(ranges("10.1.0.0/16 10.0.0.0/8 2001:db8:1::/48"))
    );
    s.issuer
        .authenticate_from(narrowed.raw.expose_secret(), ip("10.1.9.9"))
        .await
        .unwrap();

    let live_before = s.issuer.list_all(env(1), 100, 100).await.unwrap().len();
    for wider in [
        "0.0.0.0/0",
        "10.0.0.0/7",
        "10.1.0.0/16 192.0.2.0/24",
        "2001:db8::/31",
        "::/0",
        "::ffff:0:0/96",
    ] {
        let e = s
            .issuer
            .issue(
                env(1),
                caller.clone(),
                request("wider").allowed_from(ranges(wider)),
            )
            .await
            .unwrap_err();
        let Error::InvalidAllowedCidrs {
            not_covered,
            allowed,
        } = &e
        else {
            panic!("{wider}: expected invalid_allowed_cidrs, got {e:?}");
        };
        assert_eq!(allowed, &ranges("10.0.0.0/8 2001:db8::/32"));
        assert!(!not_covered.is_empty(), "{wider}");
        assert!(
            not_covered
                .iter()
                .all(|c| !allowed.iter().any(|a| a.covers(c))),
            "{wider}: {not_covered:?}"
        );
        assert_eq!(status(&e), 422);
        assert_eq!(code(&e), Some("invalid_allowed_cidrs"));
        assert!(e.to_string().contains("narrow"), "{e}");
    }
    let e = s
        .issuer
        .issue(
            env(1),
            caller.clone(),
            request("wider").allowed_from(ranges("10.1.0.0/16 192.0.2.0/24")),
        )
        .await
        .unwrap_err();
    match e {
        Error::InvalidAllowedCidrs { not_covered, .. } => {
            assert_eq!(not_covered, ["192.0.2.0/24".parse::<Cidr>().unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.issuer.list_all(env(1), 100, 100).await.unwrap().len(),
        live_before,
        "a refused issue stores nothing"
    );

    // A creator without ranges may give its tokens any.
    let open = s.issue(request("open parent")).await;
    let open_caller = s
        .issuer
        .authenticate(open.raw.expose_secret())
        .await
        .unwrap();
    let child = s
        .issuer
        .issue(
            env(1),
            open_caller.clone(),
            request("restricted child").allowed_from(ranges("192.0.2.0/24")),
        )
        .await
        .unwrap();
    assert_eq!(child.token.allowed_cidrs, Some(ranges("192.0.2.0/24")));
    let child_open = s
        .issuer
        .issue(env(1), open_caller, request("open child"))
        .await
        .unwrap();
    assert_eq!(child_open.token.allowed_cidrs, None);
}

#[tokio::test]
async fn rotation_keeps_the_ranges() {
    let s = setup();
    let issued = s
        .issue(request("rotating").allowed_from(ranges("10.0.0.0/8 2001:db8::/32")))
        .await;
    let successor = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            issued.token.id,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(successor.token.allowed_cidrs, issued.token.allowed_cidrs);
    let refused = s
        .issuer
        .authenticate_from(successor.raw.expose_secret(), ip("192.0.2.1"))
        .await;
    refused_from(refused);
    s.issuer
        .authenticate_from(successor.raw.expose_secret(), ip("10.9.9.9"))
        .await
        .unwrap();

    // A delegated token's successor keeps its (inherited) ranges too.
    let caller = s
        .issuer
        .authenticate_from(issued.raw.expose_secret(), ip("10.0.0.1"))
        .await
        .unwrap();
    let child = s
        .issuer
        .issue(
            env(1),
            caller.clone(),
            request("child").with_scopes(Scopes::empty()),
        )
        .await
        .unwrap();
    let child_successor = s
        .issuer
        .rotate(env(1), caller, child.token.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        child_successor.token.allowed_cidrs,
        Some(ranges("10.0.0.0/8 2001:db8::/32"))
    );
}
