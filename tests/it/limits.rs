//! Limits as configuration: each abuse reproduced and shown refused or
//! bounded, on both engines; rates kept exactly are never refused; client
//! addresses believed only from trusted proxies; the organization's limits
//! API; and on Redis, every key the limits create expires.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::config;
use switchboard::engine::{Admission, Bucket, Space};
use switchboard::limits;
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::agent::Agent;
use crate::support::app::{EngineKind, Setup, TestApp};
use crate::support::guest::{Guest, assert_session, assert_too_many, new_token};
use crate::support::redis;

/// The TTL (ms) of every key of this app's engine matching `pattern`
/// after the prefix; nothing on the embedded engine.
pub(crate) async fn redis_ttls(app: &TestApp, pattern: &str) -> Vec<(String, i64)> {
    let Some(prefix) = app.setup.env.get(config::ENV_REDIS_PREFIX) else {
        return Vec::new();
    };
    let mut conn = ::redis::Client::open(redis::shared().url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}{pattern}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut ttls = Vec::new();
    for key in keys {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        ttls.push((key, ttl));
    }
    ttls
}

/// On Redis: at least one key matches `pattern`, and every one expires
/// within `most`.
async fn assert_expiring(app: &TestApp, kind: EngineKind, pattern: &str, most: Duration) {
    if kind != EngineKind::Redis {
        return;
    }
    let ttls = redis_ttls(app, pattern).await;
    assert!(!ttls.is_empty(), "no key matches {pattern}");
    let most = i64::try_from(most.as_millis()).unwrap();
    for (key, ttl) in ttls {
        assert!(ttl > 0 && ttl <= most, "{key} expires in {ttl} ms");
    }
}

/// A configured guest whose `configureSession` answer is returned as is.
async fn configure(app: &TestApp, deployment: &str, token: &str) -> (Guest, Value) {
    let mut guest = app.guest(deployment, token).await;
    let answer = guest.configure().await;
    (guest, answer)
}

async fn the_engines_bucket_admits_its_burst_then_refuses(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let engine = app.state().store.engine();
    let bucket = Bucket {
        interval_micros: 20 * 60 * 1_000_000,
        burst: 3,
    };
    for _ in 0..3 {
        let admitted = engine.throttle(Space::RateLimit, "b", bucket).await;
        assert_eq!(admitted.unwrap(), Admission::Allowed);
    }
    match engine
        .throttle(Space::RateLimit, "b", bucket)
        .await
        .unwrap()
    {
        Admission::Refused { retry_after } => {
            assert!(
                retry_after <= Duration::from_secs(20 * 60),
                "{retry_after:?}"
            );
            assert!(
                retry_after > Duration::from_secs(19 * 60),
                "{retry_after:?}"
            );
        }
        Admission::Allowed => panic!("a fourth event in a burst of three"),
    }
    // Another bucket is another budget.
    let other = engine.throttle(Space::RateLimit, "c", bucket).await;
    assert_eq!(other.unwrap(), Admission::Allowed);
    // Full again after three intervals: the key expires with it.
    assert_expiring(&app, kind, "e:rate:b", Duration::from_secs(3 * 20 * 60 + 1)).await;
}
on_both_engines!(the_engines_bucket_admits_its_burst_then_refuses);

async fn guest_messages_at_the_documented_rate_are_never_refused(kind: EngineKind) {
    // The defaults: 2 a second. A fixed one-second window refused about a
    // quarter of these; the bucket refuses none.
    let app = TestApp::spawn_with(Setup::new(kind).unset(limits::ENV_GUEST_MESSAGES)).await;
    let site = app.guest_site().await;
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    // The rate the client is told is the documented one.
    let config = guest
        .ask(json!({ "action": "getConfiguration", "token": guest.token, "deploymentId": site.deployment }))
        .await;
    assert_eq!(config["body"]["messagesPerSecond"], 2, "{config}");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..12 {
        tick.tick().await;
        let answer = guest.say(&format!("steady {i}")).await;
        assert_eq!(
            answer["class"], "StructuredMessage",
            "message {i}: {answer}"
        );
    }
}
on_both_engines!(guest_messages_at_the_documented_rate_are_never_refused);

async fn a_guest_burst_is_refused_past_the_bucket(kind: EngineKind) {
    let setup = Setup::new(kind).set(limits::ENV_GUEST_MESSAGES, "1/min burst 3");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    for i in 0..3 {
        let answer = guest.say(&format!("burst {i}")).await;
        assert_eq!(answer["class"], "StructuredMessage", "{answer}");
    }
    for _ in 0..2 {
        let refused = guest.say("one too many").await;
        assert_too_many(&refused);
        let wait = refused["body"]["retryAfter"].as_u64().unwrap();
        assert!((1..=60).contains(&wait), "{refused}");
    }
    assert_expiring(&app, kind, "e:rate:gm:*", Duration::from_secs(3 * 60 + 1)).await;
}
on_both_engines!(a_guest_burst_is_refused_past_the_bucket);

async fn new_sessions_are_limited_per_address_and_resumes_are_not(kind: EngineKind) {
    let setup = Setup::new(kind)
        .address_limits()
        .set(limits::ENV_SESSIONS_PER_ADDRESS, "2/h burst 2");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let first = new_token();
    for token in [first.clone(), new_token()] {
        let (_, answer) = configure(&app, &site.deployment, &token).await;
        assert_session(&answer);
    }
    // One socket making session after session: refused from the third.
    let mut spammer = app.guest(&site.deployment, &new_token()).await;
    for _ in 0..3 {
        spammer.token = new_token();
        assert_too_many(&spammer.configure().await);
    }
    // A session that exists costs nothing: reconnecting to it works.
    let (_, again) = configure(&app, &site.deployment, &first).await;
    assert_session(&again);
    assert_expiring(&app, kind, "e:rate:sa:*", Duration::from_secs(3600 + 1)).await;
    // No session was stored for the refused ones.
    let sessions = app
        .state()
        .store
        .engine()
        .list(
            &switchboard::engine::Collection::DeploymentSessions {
                org: app.org().0,
                deployment: Uuid::parse_str(&site.deployment).unwrap(),
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(sessions.total, 2);
}
on_both_engines!(new_sessions_are_limited_per_address_and_resumes_are_not);

async fn new_sessions_are_limited_per_deployment(kind: EngineKind) {
    let setup = Setup::new(kind).set(limits::ENV_SESSIONS_PER_DEPLOYMENT, "1/h burst 2");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let other = app.guest_site().await;
    for _ in 0..2 {
        assert_session(&configure(&app, &site.deployment, &new_token()).await.1);
    }
    assert_too_many(&configure(&app, &site.deployment, &new_token()).await.1);
    // Another deployment has its own budget.
    assert_session(&configure(&app, &other.deployment, &new_token()).await.1);
}
on_both_engines!(new_sessions_are_limited_per_deployment);

async fn spoofed_forwarding_headers_from_untrusted_peers_are_ignored(kind: EngineKind) {
    // No trusted proxy: every socket is 127.0.0.1, whatever it claims.
    let setup = Setup::new(kind)
        .address_limits()
        .set(limits::ENV_SESSIONS_PER_ADDRESS, "1/h burst 1");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    for (i, claimed) in ["198.51.100.1", "198.51.100.2", "203.0.113.7"]
        .iter()
        .enumerate()
    {
        let mut guest = app
            .guest_forwarded(&site.deployment, &new_token(), claimed)
            .await;
        let answer = guest.configure().await;
        if i == 0 {
            assert_session(&answer);
        } else {
            assert_too_many(&answer);
        }
    }
    // The token endpoints alike.
    let setup = Setup::new(kind).set(limits::ENV_TOKEN_REQUESTS, "1/h burst 1");
    let app = TestApp::spawn_with(setup).await;
    let deployment = Uuid::new_v4().to_string();
    assert_eq!(
        refresh_from(&app, &deployment, "198.51.100.1").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        refresh_from(&app, &deployment, "198.51.100.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
on_both_engines!(spoofed_forwarding_headers_from_untrusted_peers_are_ignored);

/// A refresh for `deployment` through a proxy that says the client is
/// `forwarded_for`; answers the status (404 for an unknown deployment once
/// admitted, 429 when the address's bucket is empty).
async fn refresh_from(app: &TestApp, deployment: &str, forwarded_for: &str) -> StatusCode {
    app.http
        .post(app.url("/api/v2/webdeployments/token/refresh"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "deploymentId": deployment, "refreshToken": "sbr_guess" }))
        .send()
        .await
        .unwrap()
        .status()
}

/// A new session's `configureSession` answer, through a proxy that says
/// the client is `chain`.
async fn session_via(app: &TestApp, deployment: &str, chain: &str) -> Value {
    let mut guest = app.guest_forwarded(deployment, &new_token(), chain).await;
    guest.configure().await
}

async fn a_trusted_proxy_names_the_client(kind: EngineKind) {
    let setup = Setup::new(kind)
        .address_limits()
        .set(limits::ENV_TRUSTED_PROXIES, "127.0.0.0/8, ::1")
        .set(limits::ENV_SESSIONS_PER_ADDRESS, "1/h burst 1");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let d = &site.deployment;
    assert_session(&session_via(&app, d, "198.51.100.1").await);
    assert_too_many(&session_via(&app, d, "198.51.100.1").await);
    // Another client behind the same proxy has its own budget.
    assert_session(&session_via(&app, d, "198.51.100.2").await);
    // What the client wrote itself is left of its address: not believed.
    assert_too_many(&session_via(&app, d, "203.0.113.50, 198.51.100.1").await);
    // IPv6 clients count by their /64.
    assert_session(&session_via(&app, d, "2001:db8:1:2::1").await);
    assert_too_many(&session_via(&app, d, "2001:db8:1:2::ffff").await);

    let setup = Setup::new(kind)
        .set(limits::ENV_TRUSTED_PROXIES, "127.0.0.1")
        .set(limits::ENV_TOKEN_REQUESTS, "1/h burst 1");
    let app = TestApp::spawn_with(setup).await;
    let deployment = Uuid::new_v4().to_string();
    for client in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(
            refresh_from(&app, &deployment, client).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        refresh_from(&app, &deployment, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
on_both_engines!(a_trusted_proxy_names_the_client);

async fn queued_conversations_from_one_address_are_bounded(kind: EngineKind) {
    let setup = Setup::new(kind)
        .address_limits()
        .set(limits::ENV_QUEUED_PER_ADDRESS, "2");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let mut guests = Vec::new();
    for i in 0..2 {
        let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
        let answer = guest.say(&format!("queued {i}")).await;
        assert_eq!(answer["class"], "StructuredMessage", "{answer}");
        guests.push(guest);
    }
    // The third waiting conversation from this address is refused; the
    // session itself stays usable.
    let mut third = app.configured_guest(&site.deployment, &new_token()).await;
    let refused = third.say("one queue too many").await;
    assert_too_many(&refused);
    assert!(
        refused["body"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("waiting"),
        "{refused}"
    );
    assert_expiring(&app, kind, "e:queued:*", Duration::from_secs(24 * 3600 + 1)).await;

    // Once an agent answers one, it no longer waits: the third goes in.
    let (_, token) = app.client(&site.admin, "Grace", &["agent"]).await;
    let (mut agent, _) = app.agent(&token).await;
    agent.available().await;
    agent.accept_first_offer().await;
    let answer = third.say("my turn").await;
    assert_eq!(answer["class"], "StructuredMessage", "{answer}");
}
on_both_engines!(queued_conversations_from_one_address_are_bounded);

/// Conversations opened at once from one address are each counted: the
/// bound is not a list that concurrent arrivals race to rewrite.
async fn a_burst_from_one_address_counts_every_conversation(kind: EngineKind) {
    const BURST: usize = 24;
    // Only this bound: the other per-address limits would refuse a burst.
    let setup = Setup::new(kind).set(limits::ENV_QUEUED_PER_ADDRESS, &BURST.to_string());
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let mut guests = Vec::new();
    for _ in 0..BURST {
        guests.push(app.configured_guest(&site.deployment, &new_token()).await);
    }
    let answers = futures::future::join_all(
        guests
            .iter_mut()
            .enumerate()
            .map(|(i, guest)| async move { guest.say(&format!("at once {i}")).await }),
    )
    .await;
    for answer in &answers {
        assert_eq!(answer["class"], "StructuredMessage", "{answer}");
    }
    let mut one_more = app.configured_guest(&site.deployment, &new_token()).await;
    assert_too_many(&one_more.say("one too many").await);
}
on_both_engines!(a_burst_from_one_address_counts_every_conversation);

async fn new_conversations_are_rate_limited_per_address(kind: EngineKind) {
    let setup = Setup::new(kind)
        .address_limits()
        .set(limits::ENV_CONVERSATIONS_PER_ADDRESS, "1/h burst 2");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let mut first = app.configured_guest(&site.deployment, &new_token()).await;
    assert_eq!(first.say("opens").await["class"], "StructuredMessage");
    let mut second = app.configured_guest(&site.deployment, &new_token()).await;
    assert_eq!(second.say("opens").await["class"], "StructuredMessage");
    let mut third = app.configured_guest(&site.deployment, &new_token()).await;
    assert_too_many(&third.say("one conversation too many").await);
    // Messages into a conversation already open are not new conversations.
    assert_eq!(first.say("more").await["class"], "StructuredMessage");
    // Counted in the organization's home, with the deployment's bucket.
    assert_expiring(
        &app,
        kind,
        "{o:*}:e:rate:ca:*",
        Duration::from_secs(2 * 3600 + 1),
    )
    .await;
}
on_both_engines!(new_conversations_are_rate_limited_per_address);

/// A visitor's conversation an agent has accepted: the agent's socket and
/// the conversation id.
async fn answered_conversation(
    app: &TestApp,
    agent_token: &str,
    deployment: &str,
) -> (Agent, String, Guest) {
    let mut visitor = app.configured_guest(deployment, &new_token()).await;
    visitor.deliver("hello", "v1").await;
    let (mut agent, _) = app.agent(agent_token).await;
    agent.available().await;
    let conversation = agent.accept_first_offer().await;
    (agent, conversation, visitor)
}

fn send(conversation: &str, text: &str) -> Value {
    json!({ "type": "send", "conversationId": conversation, "text": text })
}

async fn agent_floods_are_refused_per_agent_and_per_organization(kind: EngineKind) {
    let setup = Setup::new(kind).set(limits::ENV_AGENT_MESSAGES, "1/h burst 3");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let (_, token) = app.client(&site.admin, "Grace", &["agent"]).await;
    let (mut agent, conversation, _visitor) =
        answered_conversation(&app, &token, &site.deployment).await;
    for i in 0..3 {
        agent.ok(send(&conversation, &format!("reply {i}"))).await;
    }
    let refused = agent
        .refused(send(&conversation, "flood"), "rate_limited")
        .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this agent"),
        "{refused}"
    );

    // The operator gives the organization a faster agent rate and a budget
    // of four messages for all its agents together.
    let org = app.get("/api/v2/organizations/me", &site.admin).await;
    let id = org["id"].as_str().unwrap();
    let view = app
        .get(
            &format!("/api/v2/organizations/{id}/limits"),
            &app.bootstrap,
        )
        .await
        .expect(StatusCode::OK);
    app.put(
        &format!("/api/v2/organizations/{id}/limits"),
        &app.bootstrap,
        json!({ "overrides": { "agentMessages": "100/s", "orgAgentMessages": "1/h burst 4" },
                "version": view["version"] }),
    )
    .await
    .expect(StatusCode::OK);
    for i in 0..4 {
        agent.ok(send(&conversation, &format!("more {i}"))).await;
    }
    let refused = agent
        .refused(send(&conversation, "flood again"), "rate_limited")
        .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("organization"),
        "{refused}"
    );
    // Kept in the organization's home, beside the agent's own bucket.
    assert_expiring(
        &app,
        kind,
        "{o:*}:e:rate:om:*",
        Duration::from_secs(4 * 3600 + 1),
    )
    .await;
}
on_both_engines!(agent_floods_are_refused_per_agent_and_per_organization);

async fn staff_sign_in_starts_are_rate_limited(kind: EngineKind) {
    let setup = Setup::new(kind).set(limits::ENV_STAFF_LOGINS, "1/h burst 2");
    let app = TestApp::spawn_with(setup).await;
    for _ in 0..2 {
        let status = app
            .call(Method::GET, "/auth/login", None, None)
            .await
            .status;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    let limited = app.call(Method::GET, "/auth/login", None, None).await;
    assert!(limited.headers.contains_key("retry-after"));
    limited.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_expiring(
        &app,
        kind,
        "e:rate:staff:*",
        Duration::from_secs(2 * 3600 + 1),
    )
    .await;
}
on_both_engines!(staff_sign_in_starts_are_rate_limited);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_limits_are_validated_and_take_effect() {
    let app = TestApp::spawn_with(Setup::new(EngineKind::Embedded).shipped_limits()).await;
    let site = app.guest_site().await;
    let admin = &site.admin;
    let org = app.get("/api/v2/organizations/me", admin).await;
    let id = org["id"].as_str().unwrap();
    let path = format!("/api/v2/organizations/{id}/limits");

    let view = app.get(&path, admin).await.expect(StatusCode::OK);
    assert_eq!(view["overrides"], json!({}));
    assert_eq!(view["effective"]["guestMessages"], "2/s burst 3");
    assert_eq!(view["effective"]["queuedPerAddress"], 20);
    let version = view["version"].clone();

    // Refused: no version, a malformed rate, out of range, an admin
    // raising a limit, an unknown field.
    for (body, words) in [
        (json!({ "overrides": {} }), "version"),
        (
            json!({ "overrides": { "guestMessages": "fast" }, "version": version }),
            "guestMessages",
        ),
        (
            json!({ "overrides": { "queuedPerAddress": 0 }, "version": version }),
            "queuedPerAddress",
        ),
        (
            json!({ "overrides": { "agentMessages": "50/s" }, "version": version }),
            "agentMessages",
        ),
        (
            json!({ "overrides": { "guestMesages": "1/s" }, "version": version }),
            "guestMesages",
        ),
    ] {
        let refused = app.put(&path, admin, body).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{words}");
        assert!(refused.text.contains(words), "{words}: {}", refused.text);
    }

    // An admin tightens: in force at once on this node.
    let tightened = app
        .put(
            &path,
            admin,
            json!({ "overrides": { "guestMessages": "1/h burst 1", "queuedPerAddress": 5 },
                    "version": version }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(tightened["overrides"]["guestMessages"], "1/h burst 1");
    assert_eq!(tightened["effective"]["queuedPerAddress"], 5);
    assert_eq!(tightened["effective"]["agentMessages"], "5/s burst 20");
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    assert_eq!(guest.say("one").await["class"], "StructuredMessage");
    assert_too_many(&guest.say("two").await);

    // A stale version is refused; the operator may raise past the node.
    let stale = app
        .put(&path, admin, json!({ "overrides": {}, "version": version }))
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let raised = app
        .put(
            &path,
            &app.bootstrap,
            json!({ "overrides": { "agentMessages": "50/s burst 100" },
                    "version": tightened["version"] }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(raised["effective"]["agentMessages"], "50/s burst 100");
    assert_eq!(raised["effective"]["guestMessages"], "2/s burst 3");

    // Another organization's admin does not see it.
    let other = app.other_organization("Other").await;
    app.get(&path, &other)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}
