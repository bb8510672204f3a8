//! The data lifecycle: retention sweeps (driven with a chosen "now", never
//! by waiting), erasure of a conversation and of a visitor, the audit log,
//! and the keys anonymous requests leave on a real Redis.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use switchboard::auth::refresh::NewFamily;
use switchboard::auth::visitor_token::SessionGrant;
use switchboard::engine::Space;
use switchboard::routing::model::AgentStatus;
use switchboard::routing::model::{GuestSession, VisitorIdentity, session_id};
use switchboard::routing::{AgentIdentity, Swept};
use switchboard::store::records::Deployment;
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};
use crate::support::guest::{conversation_of, new_token};
use crate::support::routing::{chat_content, text_event};
use crate::support::site::{SiteSpec, integration_body};

/// A signed-in visitor as the IdP named them.
fn visitor_identity(subject: &str) -> VisitorIdentity {
    VisitorIdentity {
        issuer: "https://idp.example.com/".to_owned(),
        subject: subject.to_owned(),
        email: Some("grace@example.com".to_owned()),
        email_verified: Some(true),
        name: Some("Grace Hopper".to_owned()),
        given_name: None,
        family_name: None,
    }
}

async fn log_len(app: &TestApp, conversation: Uuid) -> usize {
    app.state()
        .store
        .engine()
        .read_log(conversation, 0, 1000)
        .await
        .unwrap()
        .len()
}

async fn session(app: &TestApp, id: Uuid) -> Option<GuestSession> {
    app.state().routing.session(app.org(), id).await.unwrap()
}

/// An agent available on `queue`.
async fn available_agent(app: &TestApp, queue: Uuid) -> AgentIdentity {
    let routing = &app.state().routing;
    let agent = app.agent_identity("Ada");
    routing.heartbeat(&agent, Utc::now()).await.unwrap();
    routing
        .set_status(&agent, AgentStatus::Available, vec![queue], Utc::now())
        .await
        .unwrap();
    routing.settled().await;
    agent
}

/// A visitor's conversation that `agent` (the only one available) accepts
/// and then ends at `ended`.
async fn ended_conversation(
    app: &TestApp,
    deployment: &Deployment,
    agent: &AgentIdentity,
    ended: chrono::DateTime<Utc>,
) -> Uuid {
    let routing = &app.state().routing;
    let conversation = app.visitor_opens(deployment, "hello", None).await;
    routing.settled().await;
    routing
        .accept(agent, conversation, Utc::now())
        .await
        .unwrap();
    routing.end(agent, conversation, None, ended).await.unwrap();
    conversation
}

async fn retention_deletes_what_is_past_it(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let deployment = app.deployment_record(site.deployment_id()).await;
    let routing = &app.state().routing;
    let now = Utc::now();
    let agent = available_agent(&app, site.queue_id()).await;

    // The node's default is 90 days: one conversation ended 100 days ago,
    // one 10 days ago.
    let old = ended_conversation(&app, &deployment, &agent, now - Duration::days(100)).await;
    let recent = ended_conversation(&app, &deployment, &agent, now - Duration::days(10)).await;
    let old_session = routing
        .conversation(app.org(), old)
        .await
        .unwrap()
        .unwrap()
        .session_id;
    assert!(log_len(&app, old).await >= 3);
    // A session that never spoke, idle for two days, and a fresh one.
    let silent = session_id(&new_token());
    routing
        .open_session(silent, &deployment, now - Duration::days(2))
        .await
        .unwrap();
    let fresh = session_id(&new_token());
    routing.open_session(fresh, &deployment, now).await.unwrap();

    let swept = routing.sweep_retention(now).await.unwrap();
    assert_eq!(swept.conversations, 1, "{swept:?}");
    assert!(swept.log_entries >= 3, "{swept:?}");
    assert_eq!(swept.sessions, 1, "{swept:?}");
    assert!(
        routing
            .conversation(app.org(), old)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(log_len(&app, old).await, 0);
    assert!(
        routing
            .conversation(app.org(), recent)
            .await
            .unwrap()
            .is_some()
    );
    assert!(log_len(&app, recent).await >= 3);
    assert!(session(&app, silent).await.is_none());
    assert!(session(&app, fresh).await.is_some());
    // The erased conversation's session no longer names it; it goes once
    // it has been silent past the expiry.
    let left = session(&app, old_session).await.unwrap();
    assert_eq!(left.conversation_id, None);

    // Idempotent: nothing more is due.
    assert_eq!(
        routing.sweep_retention(now).await.unwrap(),
        Swept::default()
    );

    // The deployment keeps its conversations 5 days: the recent one is due.
    let path = format!("/api/v2/webdeployments/deployments/{}", site.deployment);
    let mut body = app.get(&path, &site.admin).await.expect(StatusCode::OK);
    body["retentionDays"] = json!(5);
    let updated = app
        .put(&path, &site.admin, body)
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["retentionDays"], 5);
    let swept = routing.sweep_retention(now).await.unwrap();
    assert_eq!(swept.conversations, 1, "{swept:?}");
    assert!(
        routing
            .conversation(app.org(), recent)
            .await
            .unwrap()
            .is_none()
    );

    // Two days on, the sessions left without a conversation go too.
    let later = now + Duration::days(2);
    let swept = routing.sweep_retention(later).await.unwrap();
    assert!(swept.sessions >= 2, "{swept:?}");
    assert!(session(&app, old_session).await.is_none());

    // The organization keeps its audit entries 30 days: they go after it.
    let org = app
        .get("/api/v2/organizations/me", &site.admin)
        .await
        .expect(StatusCode::OK);
    let update = json!({ "name": org["name"], "retentionDays": 30, "version": org["version"] });
    let org = app
        .put("/api/v2/organizations/me", &site.admin, update)
        .await
        .expect(StatusCode::OK);
    assert_eq!(org["retentionDays"], 30);
    let audit = app
        .get("/api/v2/audit", &site.admin)
        .await
        .expect(StatusCode::OK);
    assert!(audit["total"].as_u64().unwrap() > 0);
    let swept = routing
        .sweep_retention(now + Duration::days(31))
        .await
        .unwrap();
    assert!(swept.audit_entries > 0, "{swept:?}");
    let audit = app
        .get("/api/v2/audit", &site.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit["total"], 0, "{audit}");

    // Out-of-range retentions are refused, naming the field.
    let update = json!({ "name": org["name"], "retentionDays": 0, "version": org["version"] });
    let refused = app
        .put("/api/v2/organizations/me", &site.admin, update)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("retentionDays")
    );
}
on_both_engines!(retention_deletes_what_is_past_it);

/// One node sweeps at a time: while another holds the lease, a node
/// leaves the sweep to it.
async fn one_node_sweeps_at_a_time(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let deployment = app.deployment_record(site.deployment_id()).await;
    let now = Utc::now();
    let agent = available_agent(&app, site.queue_id()).await;
    let old = ended_conversation(&app, &deployment, &agent, now - Duration::days(100)).await;
    let engine = app.state().store.engine();
    let other = b"another-node";
    let lease = engine
        .lease(
            Space::RetentionLease,
            "sweep",
            other,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(lease, switchboard::engine::Lease::Held);
    let routing = &app.state().routing;
    assert_eq!(routing.sweep_retention_once(now).await.unwrap(), None);
    assert!(
        routing
            .conversation(app.org(), old)
            .await
            .unwrap()
            .is_some()
    );
    engine
        .release(Space::RetentionLease, "sweep", other)
        .await
        .unwrap();
    let swept = routing.sweep_retention_once(now).await.unwrap().unwrap();
    assert_eq!(swept.conversations, 1);
    assert!(
        routing
            .conversation(app.org(), old)
            .await
            .unwrap()
            .is_none()
    );
}
on_both_engines!(one_node_sweeps_at_a_time);

/// The keys on this app's Redis that mention `id`, with their TTLs (ms);
/// nothing on the embedded engine.
async fn redis_keys_naming(app: &TestApp, id: Uuid) -> Vec<(String, i64)> {
    crate::limits::redis_ttls(app, &format!("*{id}*")).await
}

async fn a_deleted_deployments_sessions_are_swept(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let deployment = app.deployment_record(site.deployment_id()).await;
    let routing = &app.state().routing;
    let now = Utc::now();
    // A session that never spoke and one with a conversation, both fresh:
    // past nothing's retention while the deployment lives.
    let silent = session_id(&new_token());
    routing
        .open_session(silent, &deployment, now)
        .await
        .unwrap();
    let conversation = app.visitor_opens(&deployment, "hello", None).await;
    let talker = routing
        .conversation(app.org(), conversation)
        .await
        .unwrap()
        .unwrap()
        .session_id;
    assert_eq!(routing.sweep_retention(now).await.unwrap().sessions, 0);
    let before = redis_keys_naming(&app, talker).await;
    assert!(kind != EngineKind::Redis || !before.is_empty());

    app.delete(
        &format!("/api/v2/webdeployments/deployments/{}", site.deployment),
        &site.admin,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let swept = routing.sweep_retention(now).await.unwrap();
    assert_eq!(swept.sessions, 2, "{swept:?}");
    assert!(session(&app, silent).await.is_none());
    assert!(session(&app, talker).await.is_none());
    let listed = app
        .state()
        .store
        .engine()
        .list(
            &switchboard::engine::Collection::DeploymentSessions {
                org: app.org().0,
                deployment: deployment.meta.id,
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 0);
    // The conversation is the organization's, kept for its retention.
    assert!(
        routing
            .conversation(app.org(), conversation)
            .await
            .unwrap()
            .is_some()
    );
    // Done: the tombstone went too, and the next sweep has nothing to do.
    assert_eq!(
        routing.sweep_retention(now).await.unwrap(),
        Swept::default()
    );
    // On Redis, nothing lasting names the sessions or the deployment (its
    // rate buckets expire by themselves).
    for id in [silent, talker, deployment.meta.id] {
        let lasting: Vec<_> = redis_keys_naming(&app, id)
            .await
            .into_iter()
            .filter(|(_, ttl)| *ttl < 0)
            .collect();
        assert!(lasting.is_empty(), "{id}: {lasting:?}");
    }
}
on_both_engines!(a_deleted_deployments_sessions_are_swept);

async fn erasing_a_conversation_removes_it_everywhere(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let routing = &app.state().routing;

    // A guest on a real socket, talking to an agent who holds the
    // conversation.
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    let answer = guest.say("my card number is 4111").await;
    let conversation = conversation_of(&answer);
    let jwt = guest.jwt().await;
    let agent = app.agent_accepts(site.queue_id(), conversation).await;
    let history = app
        .get("/api/v2/webmessaging/messages", &jwt)
        .await
        .expect(StatusCode::OK);
    assert!(history.to_string().contains("4111"), "{history}");

    // Another organization cannot see it, let alone erase it.
    let stranger = app.other_organization("Elsewhere").await;
    app.delete(&format!("/api/v2/conversations/{conversation}"), &stranger)
        .await
        .expect(StatusCode::NOT_FOUND);

    let erased = app
        .delete(
            &format!("/api/v2/conversations/{conversation}"),
            &site.admin,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(erased["conversations"], json!([conversation.to_string()]));
    assert!(erased["logEntries"].as_u64().unwrap() >= 2, "{erased}");

    assert!(
        routing
            .conversation(app.org(), conversation)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(log_len(&app, conversation).await, 0);
    let held = routing
        .agent_state(app.org(), agent.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!held.conversations.contains(&conversation));
    let history = app
        .get("/api/v2/webmessaging/messages", &jwt)
        .await
        .expect(StatusCode::OK);
    assert!(!history.to_string().contains("4111"), "{history}");

    // Gone: a second erasure finds nothing.
    app.delete(
        &format!("/api/v2/conversations/{conversation}"),
        &site.admin,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    // The audit log says who erased what, by id only.
    let audit = app
        .get(
            &format!("/api/v2/audit?recordId={conversation}"),
            &site.admin,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit["total"], 1, "{audit}");
    assert_eq!(audit["entities"][0]["action"], "erase");
    assert_eq!(audit["entities"][0]["record"]["kind"], "conversation");
}
on_both_engines!(erasing_a_conversation_removes_it_everywhere);

async fn erasing_a_visitor_removes_everything_about_them(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let deployment = app.deployment_record(site.deployment_id()).await;
    let state = app.state();
    let routing = &state.routing;
    let org = state.auth.default_org();
    let identity = visitor_identity("grace-1906");
    let visitor = state
        .visitor_tokens
        .visitor_subject(org, &identity.issuer, &identity.subject);
    let now = Utc::now();

    // Two conversations of one signed-in session, and another visitor's.
    let session = session_id(&new_token());
    routing
        .open_session(session, &deployment, now)
        .await
        .unwrap();
    routing
        .update_session(app.org(), session, |s| {
            s.identity = Some(identity.clone());
            s.visitor_id = Some(visitor);
            Ok(())
        })
        .await
        .unwrap();
    let mut conversations = Vec::new();
    for text in ["first", "second"] {
        let (c, _, _) = routing
            .visitor_post(session, &deployment, &chat_content(), text_event(text), now)
            .await
            .unwrap();
        conversations.push(c.meta.id);
        routing.start_new(app.org(), session).await.unwrap();
    }
    assert_eq!(
        routing
            .visitor_conversations(app.org(), visitor)
            .await
            .unwrap(),
        conversations
    );
    let bystander = app
        .visitor_opens(
            &deployment,
            "not me",
            Some(visitor_identity("someone-else")),
        )
        .await;

    // Neither or both ways of naming the visitor is refused.
    for body in [
        json!({}),
        json!({ "visitorId": visitor, "issuer": identity.issuer, "subject": identity.subject }),
        json!({ "issuer": identity.issuer }),
    ] {
        app.post("/api/v2/visitors/erase", &site.admin, body)
            .await
            .expect(StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Admins only.
    let agent = app.client_token(&site.admin, &["agent"]).await;
    app.post(
        "/api/v2/visitors/erase",
        &agent,
        json!({ "visitorId": visitor }),
    )
    .await
    .expect(StatusCode::FORBIDDEN);

    let erased = app
        .post(
            "/api/v2/visitors/erase",
            &site.admin,
            json!({ "issuer": identity.issuer, "subject": identity.subject }),
        )
        .await
        .expect(StatusCode::OK);
    let mut listed: Vec<String> = erased["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = conversations.iter().map(Uuid::to_string).collect();
    expected.sort();
    assert_eq!(listed, expected, "{erased}");
    assert_eq!(erased["sessions"], 1, "{erased}");
    assert_eq!(erased["visitors"], 1, "{erased}");
    assert!(erased["logEntries"].as_u64().unwrap() >= 2);
    for c in &conversations {
        assert!(routing.conversation(app.org(), *c).await.unwrap().is_none());
        assert_eq!(log_len(&app, *c).await, 0);
    }
    assert!(
        routing
            .visitor_conversations(app.org(), visitor)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(self::session(&app, session).await.is_none());
    assert!(
        routing
            .conversation(app.org(), bystander)
            .await
            .unwrap()
            .is_some()
    );

    // By id, again: nothing is left.
    let again = app
        .post(
            "/api/v2/visitors/erase",
            &site.admin,
            json!({ "visitorId": visitor }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        again,
        json!({ "conversations": [], "logEntries": 0, "sessions": 0, "visitors": 0,
                "tokenFamilies": 0 })
    );
    // The audit log names the visitor id, never the IdP subject.
    let audit = app
        .get(&format!("/api/v2/audit?recordId={visitor}"), &site.admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit["total"], 2, "{audit}");
    let all = app
        .get("/api/v2/audit?pageSize=100", &site.admin)
        .await
        .expect(StatusCode::OK);
    assert!(!all.to_string().contains("grace-1906"), "{all}");
}
on_both_engines!(erasing_a_visitor_removes_everything_about_them);

/// A signed-in sign-in as the exchange makes it: a refresh-token family
/// started for `identity`, and a session JWT of that family.
async fn sign_in(app: &TestApp, deployment: Uuid, identity: &VisitorIdentity) -> (Uuid, String) {
    let tokens = &app.state().visitor_tokens;
    let org = app.state().auth.default_org();
    let now = Utc::now();
    let (family, _refresh) = tokens
        .start_family(
            NewFamily {
                deployment,
                org,
                integration: Uuid::new_v4(),
                identity: identity.clone(),
                lifetime: std::time::Duration::from_secs(3600),
            },
            now,
        )
        .await
        .unwrap();
    let issued = tokens
        .issue(
            &SessionGrant {
                deployment,
                org,
                identity: identity.clone(),
                sid: family,
                not_after: now + Duration::hours(1),
            },
            now,
        )
        .await
        .unwrap();
    (family, issued.jwt.expose_secret().to_owned())
}

async fn erasing_a_visitor_ends_their_sign_ins(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let spec = SiteSpec::new()
        .integration(integration_body("Shop IdP"))
        .sign_in(true)
        .session_upgrade(false);
    let site = app.site(&spec).await;
    let deployment = site.deployment_id();
    let state = app.state();
    let org = state.auth.default_org();
    let identity = visitor_identity("ada-1815");
    let visitor = state
        .visitor_tokens
        .visitor_subject(org, &identity.issuer, &identity.subject);

    // Two devices signed in, neither has spoken: only the visitor's lists
    // lead to them. A third sign-in was exchanged but never connected.
    let mut sockets = Vec::new();
    let mut families = Vec::new();
    for _ in 0..2 {
        let (family, jwt) = sign_in(&app, deployment, &identity).await;
        let mut guest = app.guest(&site.deployment, &new_token()).await;
        crate::support::guest::assert_session(&guest.authenticate(&jwt).await);
        sockets.push(guest);
        families.push(family);
    }
    let (unused, _) = sign_in(&app, deployment, &identity).await;
    families.push(unused);
    // Someone else, signed in too, is left alone.
    let (bystander_family, bystander_jwt) =
        sign_in(&app, deployment, &visitor_identity("someone-else")).await;
    let mut bystander = app.guest(&site.deployment, &new_token()).await;
    crate::support::guest::assert_session(&bystander.authenticate(&bystander_jwt).await);

    let erased = app
        .post(
            "/api/v2/visitors/erase",
            &site.admin,
            json!({ "visitorId": visitor }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(erased["sessions"], 2, "{erased}");
    assert_eq!(erased["tokenFamilies"], 3, "{erased}");
    // Their sockets are closed; every family is revoked, so neither a
    // refresh nor a session token of theirs works any more.
    for mut socket in sockets {
        socket.closed_after_frames().await;
    }
    for family in families {
        assert!(state.visitor_tokens.family_revoked(family).await.unwrap());
    }
    assert!(
        !state
            .visitor_tokens
            .family_revoked(bystander_family)
            .await
            .unwrap()
    );
    let still = bystander.say("still here").await;
    assert_eq!(still["class"], "StructuredMessage", "{still}");
    // The lists went with them.
    let key = switchboard::auth::visitor_token::visitor_lists_key(org, visitor);
    let engine = state.store.engine();
    for space in [Space::VisitorSessions, Space::VisitorFamilies] {
        assert!(engine.recall(space, &key).await.unwrap().is_empty());
    }
    // On Redis, the bystander's lists expire.
    if kind == EngineKind::Redis {
        let other = state
            .visitor_tokens
            .visitor_subject(org, &identity.issuer, "someone-else");
        let lists: Vec<_> = redis_keys_naming(&app, other)
            .await
            .into_iter()
            .filter(|(key, _)| key.contains(":e:v"))
            .collect();
        assert_eq!(lists.len(), 2, "{lists:?}");
        for (key, ttl) in lists {
            assert!(ttl > 0, "{key} does not expire");
        }
    }
}
on_both_engines!(erasing_a_visitor_ends_their_sign_ins);

fn actions(page: &Value) -> Vec<(String, String)> {
    page["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["record"]["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn the_audit_log_records_admin_changes_without_secrets(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin_token = app.admin().await;
    let (admin_id, admin) = app.client(&admin_token, "auditor", &["admin"]).await;

    let integration = app
        .post(
            "/api/v2/integrations/oidc",
            &admin,
            json!({ "name": "Shop IdP", "issuer": "https://login.shop.example.com/",
                "clientId": "web", "clientSecret": "s3cr3t-first", "scopes": ["openid"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let integration_id = integration["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v2/integrations/oidc/{integration_id}");
    let mut update = integration;
    update["clientSecret"] = json!("s3cr3t-second");
    update["name"] = json!("Shop IdP (new)");
    app.put(&path, &admin, update).await.expect(StatusCode::OK);
    let (client_id, _) = app.client(&admin, "bot", &["agent"]).await;
    app.delete(&path, &admin)
        .await
        .expect(StatusCode::NO_CONTENT);

    let page = app
        .get(&format!("/api/v2/audit?actorId={admin_id}"), &admin)
        .await
        .expect(StatusCode::OK);
    // Newest first.
    assert_eq!(
        actions(&page),
        [
            ("delete".to_owned(), "oidcIntegration".to_owned()),
            ("create".to_owned(), "apiClient".to_owned()),
            ("update".to_owned(), "oidcIntegration".to_owned()),
            ("create".to_owned(), "oidcIntegration".to_owned()),
        ],
        "{page}"
    );
    let text = page.to_string();
    for secret in ["s3cr3t-first", "s3cr3t-second", "secretDigest"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let updated = &page["entities"][2];
    assert_eq!(
        updated["actor"],
        json!({ "kind": "apiClient", "id": admin_id })
    );
    assert!(updated["time"].is_string());
    let changes = updated["changes"].as_array().unwrap();
    let name = changes.iter().find(|c| c["field"] == "name").unwrap();
    assert_eq!(name["before"], "Shop IdP");
    assert_eq!(name["after"], "Shop IdP (new)");
    assert!(
        changes.iter().all(|c| c["field"] != "version"),
        "bookkeeping is not a change: {updated}"
    );
    // The new client's secret, shown once at creation, is named only.
    let created = &page["entities"][1];
    assert_eq!(created["record"]["id"], client_id.to_string());
    if let Some(secret) = created["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "secret")
    {
        assert!(secret.get("after").is_none(), "{secret}");
    }

    // Narrowed by record; paged.
    let by_record = app
        .get(&format!("/api/v2/audit?recordId={integration_id}"), &admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(by_record["total"], 3, "{by_record}");
    let second = app
        .get(
            &format!("/api/v2/audit?recordId={integration_id}&pageSize=2&pageNumber=2"),
            &admin,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        actions(&second),
        [("create".to_owned(), "oidcIntegration".to_owned())]
    );
    let unfiltered = app
        .get("/api/v2/audit?pageSize=1", &admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(unfiltered["entities"][0]["action"], "delete");

    // Admins only; bad filters are refused; other organizations see none.
    let agent = app.client_token(&admin, &["agent", "supervisor"]).await;
    app.get("/api/v2/audit", &agent)
        .await
        .expect(StatusCode::FORBIDDEN);
    app.get("/api/v2/audit?actorId=nope", &admin)
        .await
        .expect(StatusCode::BAD_REQUEST);
    let stranger = app.other_organization("Elsewhere").await;
    let theirs = app
        .get(
            &format!("/api/v2/audit?recordId={integration_id}"),
            &stranger,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(theirs["total"], 0);
}
on_both_engines!(the_audit_log_records_admin_changes_without_secrets);

/// Every key an anonymous visitor's requests create on Redis either
/// expires by itself or is deleted by the retention sweep once it is due:
/// nothing they leave grows forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_keys_expire_or_are_swept_redis() {
    let app = TestApp::spawn(EngineKind::Redis).await;
    let site = app.guest_site().await;
    let prefix = app.setup.env[switchboard::config::ENV_REDIS_PREFIX].clone();
    let url = crate::support::redis::shared().url();
    let mut redis = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = |mut conn: ::redis::aio::MultiplexedConnection| {
        let pattern = format!("{prefix}*");
        async move {
            let mut found: Vec<String> = ::redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            found.sort();
            found
        }
    };
    let before = keys(redis.clone()).await;

    // The anonymous surface: the public configuration, sockets that
    // configure and say something (and one that only configures), history.
    app.public_config(&site.deployment).await;
    let mut talker = app.configured_guest(&site.deployment, &new_token()).await;
    let jwt = talker.jwt().await;
    talker.say("hello").await;
    app.get("/api/v2/webmessaging/messages", &jwt)
        .await
        .expect(StatusCode::OK);
    let _silent = app.configured_guest(&site.deployment, &new_token()).await;
    for _ in 0..3 {
        talker.say("more").await;
    }
    drop(talker);

    let after = keys(redis.clone()).await;
    let created: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert!(!created.is_empty());
    let mut lasting = Vec::new();
    for key in created {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        // -1: no time to live. Otherwise it expires by itself (0: in
        // under a millisecond) or is gone already (-2).
        if ttl == -1 {
            lasting.push(key.clone());
        }
    }
    assert!(
        lasting.iter().any(|k| k.ends_with(":log")),
        "the conversation's log lasts until its retention: {lasting:?}"
    );

    // Past every retention, the sweep deletes each lasting key.
    let far = Utc::now() + Duration::days(i64::from(switchboard::config::MAX_RETENTION_DAYS) + 1);
    app.state().routing.sweep_retention(far).await.unwrap();
    let left = keys(redis.clone()).await;
    let stuck: Vec<&String> = lasting.iter().filter(|k| left.contains(k)).collect();
    assert!(stuck.is_empty(), "keys without a bound: {stuck:?}");
}
