//! Delivery to the guest: the agent's messages, presence and typing, every
//! tab of a session, idempotent resends, and resume after a reconnect
//! without a gap or a duplicate.

use chrono::Utc;
use serde_json::json;
use switchboard::engine::BusMessage;
use switchboard::routing::model::{Notice, Participant, ParticipantRole};
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};
use crate::support::guest::{assert_session, conversation_of, new_token, presence, seq};
use crate::support::routing::text_event;
use crate::support::ws::WAIT;

async fn agent_messages_presence_and_typing_reach_the_guest(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let t = new_token();
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    let mut tab = app.configured_guest(&site.deployment, &t).await;

    let answer = guest.say("hello").await;
    assert_eq!(seq(&answer), 1);
    let conversation = conversation_of(&answer);
    // The other tab sees the visitor's message as Inbound.
    let pushed = tab.next().await;
    assert_eq!(pushed["type"], "message");
    assert_eq!(pushed["body"]["direction"], "Inbound");
    assert_eq!(pushed["body"]["text"], "hello");
    assert_eq!(seq(&pushed), 1);

    let ada = app.agent_accepts(site.queue_id(), conversation).await;
    for socket in [&mut guest, &mut tab] {
        let join = socket.next().await;
        assert_eq!(join["type"], "message");
        assert_eq!(join["body"]["type"], "Event");
        assert_eq!(join["body"]["direction"], "Outbound");
        assert_eq!(join["body"]["events"][0]["eventType"], "Presence");
        assert_eq!(presence(&join), "Join");
        assert_eq!(seq(&join), 2);
    }

    let routing = &app.state().routing;
    routing
        .agent_post(&ada, conversation, text_event("Hi, I am Ada"), Utc::now())
        .await
        .unwrap();
    let message = guest.next().await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["class"], "StructuredMessage");
    assert_eq!(message["body"]["direction"], "Outbound");
    assert_eq!(message["body"]["originatingEntity"], "Human");
    assert_eq!(message["body"]["channel"]["from"]["nickname"], "Ada");
    assert_eq!(message["body"]["text"], "Hi, I am Ada");
    assert_eq!(message["body"]["conversationId"], conversation.to_string());
    assert_eq!(seq(&message), 3);

    // Agent typing: an Event with a duration, not logged.
    let agent = Participant::agent(ada.id, "Ada");
    app.typing(conversation, agent).await;
    let typing = guest.next().await;
    assert_eq!(typing["body"]["type"], "Event");
    assert_eq!(typing["body"]["events"][0]["eventType"], "Typing");
    assert_eq!(typing["body"]["events"][0]["typing"]["type"], "On");
    assert_eq!(typing["body"]["events"][0]["typing"]["duration"], 5000);

    // The guest's typing reaches the conversation channel, not other tabs.
    let mut sub = app.watch(conversation).await;
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Typing","typing":{"type":"On"}}]}}))
        .await;
    // The echo of one's own onMessage is a `message`, as Genesys sends it.
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["body"]["direction"], "Inbound");
    let notice = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    let BusMessage::Payload(payload) = notice else {
        panic!()
    };
    let notice: Notice = serde_json::from_slice(&payload).unwrap();
    assert!(matches!(notice, Notice::Typing { from, .. } if from.role == ParticipantRole::Visitor));

    // The end: a Disconnect presence; the end marker itself is not shown.
    routing
        .end(&ada, conversation, None, Utc::now())
        .await
        .unwrap();
    let disconnect = guest.next().await;
    assert_eq!(presence(&disconnect), "Disconnect");
    // 1 hello, 2 join, 3 text, 4 disconnect (5, the end marker, is hidden).
    assert_eq!(seq(&disconnect), 4);
    guest.fence().await;
    // tab: message 3, then the disconnect; no typing of the visitor.
    assert_eq!(seq(&tab.next().await), 3);
    let typing = tab.next().await;
    assert_eq!(typing["body"]["events"][0]["eventType"], "Typing");
    assert_eq!(presence(&tab.next().await), "Disconnect");
    tab.fence().await;
}
on_both_engines!(agent_messages_presence_and_typing_reach_the_guest);

async fn resends_with_the_same_id_are_idempotent(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    let t = guest.token.clone();
    let first = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text","text":"once","id":"client-1"}}))
        .await;
    assert_eq!(seq(&first), 1);
    let again = guest
        .ask(json!({"action":"onMessage","token":t,"messageId":"client-1","message":{"type":"Text","text":"once"}}))
        .await;
    assert_eq!(seq(&again), 1);
    assert_eq!(again["body"]["id"], first["body"]["id"]);
    assert_eq!(again["body"]["clientMessageId"], "client-1");
    let conversation = conversation_of(&first);
    let log = app
        .state()
        .routing
        .events_after(conversation, 0, 100)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    guest.fence().await;
}
on_both_engines!(resends_with_the_same_id_are_idempotent);

async fn resume_after_reconnect_has_no_gap_and_no_duplicate(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let t = new_token();
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    assert_eq!(seq(&guest.say("one").await), 1);
    let answer = guest.say("two").await;
    assert_eq!(seq(&answer), 2);
    let conversation = conversation_of(&answer);
    drop(guest);

    // While the guest is away, the agent writes twice.
    let routing = &app.state().routing;
    let ada = Participant::agent(Uuid::new_v4(), "Ada");
    for text in ["three", "four"] {
        routing
            .append(conversation, ada.clone(), text_event(text), Utc::now())
            .await
            .unwrap();
    }

    let mut guest = app.guest(&site.deployment, &t).await;
    let answer = guest.configure_with(json!({ "lastSequence": 2 })).await;
    let body = assert_session(&answer);
    assert_eq!(body["newSession"], false);
    assert_eq!(body["conversationId"], conversation.to_string());
    assert_eq!(body["lastSequence"], 4);
    let three = guest.next().await;
    assert_eq!(
        (seq(&three), three["body"]["text"].as_str()),
        (3, Some("three"))
    );
    let four = guest.next().await;
    assert_eq!(
        (seq(&four), four["body"]["text"].as_str()),
        (4, Some("four"))
    );
    // Live delivery continues after the replay.
    routing
        .append(conversation, ada.clone(), text_event("five"), Utc::now())
        .await
        .unwrap();
    assert_eq!(seq(&guest.next().await), 5);
    guest.fence().await;

    // Another reconnect from the middle, then a message of its own: the
    // events it had not seen come first, its own is the answer.
    drop(guest);
    let mut guest = app.guest(&site.deployment, &t).await;
    assert_session(&guest.configure_with(json!({ "lastSequence": 4 })).await);
    assert_eq!(seq(&guest.next().await), 5);
    let own = guest.say("six").await;
    // The echo of one's own message is a `message`, as Genesys sends it.
    assert_eq!(own["type"], "message");
    assert_eq!(seq(&own), 6);
    guest.fence().await;

    // Without lastSequence nothing is replayed.
    drop(guest);
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    guest.fence().await;
    routing
        .append(conversation, ada, text_event("seven"), Utc::now())
        .await
        .unwrap();
    assert_eq!(seq(&guest.next().await), 7);
}
on_both_engines!(resume_after_reconnect_has_no_gap_and_no_duplicate);
