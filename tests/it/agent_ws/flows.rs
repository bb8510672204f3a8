//! A conversation's way through the agents: offers, accept and decline,
//! messages and typing both ways, ending with a wrap-up, who is offered
//! first, capacity, offer timeouts, lost agents, transfers and the
//! directory of transfer targets.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use switchboard::engine::BusMessage;
use switchboard::routing::model::{
    ConversationState, EventBody, Notice, Participant, ParticipantRole, PresenceKind,
};
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::agent::conversation_in;
use crate::support::app::{EngineKind, Setup};
use crate::support::routing::{chat_content, text_event};
use crate::support::ws::WAIT;

use super::{Scene, conversation_state, create_queue, log_of, verified_visitor};

async fn an_accepted_conversation_flows_both_ways(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let conversation = scene
        .visitor("Hello, I need help", Some(verified_visitor()))
        .await;
    let (agent_id, token) = scene.agent("Grace").await;
    let (mut agent, _) = app.agent(&token).await;

    // Going available routes the waiting conversation here.
    let presence = agent.available().await;
    assert_eq!(presence["result"]["status"], "available");
    assert_eq!(
        presence["result"]["queues"],
        json!([scene.queue.to_string()])
    );
    let offer = agent.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["state"], "offered");
    assert_eq!(offer["conversation"]["queueId"], scene.queue.to_string());
    assert!(offer["conversation"]["offerDeadline"].is_string());
    // Then the conversation itself, with its events (a delta: the
    // snapshot was sent when the socket opened).
    let added = agent.expect("conversation").await;
    let offered = conversation_in(&added, conversation).unwrap();
    assert_eq!(offered["events"][0]["text"], "Hello, I need help");

    // Accepting connects it; the visitor's verified identity comes along.
    let accepted = agent
        .ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    assert_eq!(accepted["result"]["conversation"]["state"], "connected");
    // The agent's join reaches the socket once: as an event, or inside the
    // conversation's update when the socket read the log first.
    let mut join = None;
    let update = loop {
        let frame = agent.next().await;
        if frame["type"] == "event" && frame["kind"] == "presence" {
            join = Some(frame);
        } else if frame["type"] == "conversation"
            && conversation_in(&frame, conversation).is_some_and(|c| c["state"] == "connected")
        {
            break frame;
        }
    };
    let held = conversation_in(&update, conversation).unwrap();
    let visitor = &held["visitor"];
    assert_eq!(visitor["authenticated"], true);
    assert_eq!(visitor["issuer"], "https://idp.example.com/");
    assert_eq!(visitor["subject"], "user-42");
    assert_eq!(visitor["email"], "ada@example.com");
    assert_eq!(visitor["name"], "Ada Lovelace");
    assert_eq!(visitor["displayName"], "Ada Lovelace");
    assert!(held["connectedSince"].is_string());
    let in_snapshot = held["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "presence")
        .cloned();
    let join = match (join, in_snapshot) {
        (Some(join), None) | (None, Some(join)) => join,
        (None, None) => agent.event_of(conversation, "presence").await,
        (Some(_), Some(_)) => panic!("the join was sent twice"),
    };
    assert_eq!(join["presence"], "Join");
    assert_eq!(join["from"]["id"], agent_id.to_string());

    // A message goes to the log with its sequence, and comes back as an event.
    let sent = agent
        .ok(json!({ "type": "send", "conversationId": conversation, "text": "Hi Ada", "id": "m-1" }))
        .await;
    let sequence = sent["result"]["sequence"].as_u64().unwrap();
    assert_eq!(sent["result"]["duplicate"], false);
    let event = agent.event_of(conversation, "message").await;
    assert_eq!(event["sequence"], sequence);
    assert_eq!(event["text"], "Hi Ada");
    assert_eq!(event["from"]["role"], "agent");
    // A resend with the same id appends nothing.
    let again = agent
        .ok(json!({ "type": "send", "conversationId": conversation, "text": "Hi Ada", "id": "m-1" }))
        .await;
    assert_eq!(again["result"]["sequence"], sequence);
    assert_eq!(again["result"]["duplicate"], true);
    let log = log_of(app, conversation).await;
    let replies = log
        .iter()
        .filter(|e| matches!(e, EventBody::Message { text: Some(t), .. } if t == "Hi Ada"))
        .count();
    assert_eq!(replies, 1);

    // The visitor's next message arrives live.
    let session = app
        .state()
        .routing
        .conversation(app.org(), conversation)
        .await
        .unwrap()
        .unwrap()
        .session_id;
    let (_, posted, _) = app
        .state()
        .routing
        .visitor_post(
            session,
            &scene.deployment,
            &chat_content(),
            text_event("Thanks!"),
            Utc::now(),
        )
        .await
        .unwrap();
    let event = agent.event_of(conversation, "message").await;
    assert_eq!(event["text"], "Thanks!");
    assert_eq!(event["sequence"], posted.seq);
    assert_eq!(event["from"]["role"], "visitor");

    // Typing, both ways.
    let mut watch = app.watch(conversation).await;
    let visitor = Participant {
        name: "Ada Lovelace".to_owned(),
        ..Participant::visitor(None)
    };
    app.typing(conversation, visitor).await;
    let typing = agent.expect("typing").await;
    assert_eq!(typing["conversationId"], conversation.to_string());
    assert_eq!(typing["from"]["role"], "visitor");
    agent
        .ok(json!({ "type": "typing", "conversationId": conversation }))
        .await;
    let agent_typing = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(BusMessage::Payload(payload)) = watch.recv().await
                && let Ok(Notice::Typing { from, .. }) = serde_json::from_slice::<Notice>(&payload)
                && from.role == ParticipantRole::Agent
            {
                return from;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(agent_typing.id, Some(agent_id));

    // Ending with a wrap-up: the visitor sees the agent disconnect.
    let ended = agent
        .ok(json!({ "type": "end", "conversationId": conversation, "wrapUp": "resolved" }))
        .await;
    assert_eq!(ended["result"]["conversation"]["state"], "ended");
    assert_eq!(ended["result"]["conversation"]["wrapUp"], "resolved");
    // No longer held: a delta says so, no snapshot.
    agent
        .until("the conversation removed", |f| {
            assert_ne!(f["type"], "snapshot", "{f}");
            f["type"] == "removed" && f["conversationId"] == conversation.to_string()
        })
        .await;
    let log = log_of(app, conversation).await;
    assert!(log.contains(&EventBody::presence(PresenceKind::Disconnect)));
    assert!(log.contains(&EventBody::Ended {
        wrap_up: Some("resolved".to_owned())
    }));
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Ended { wrap_up: Some(w), .. } if w == "resolved"
    ));
    // Nothing more can be said by the agent once it is over.
    agent
        .refused(
            json!({ "type": "send", "conversationId": conversation, "text": "hello?" }),
            "not_allowed",
        )
        .await;
    // But the agent may still read what it held.
    let history = agent
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    let events = history["result"]["events"].as_array().unwrap();
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["text"], "Hello, I need help");
    assert_eq!(history["result"]["more"], false);
}
on_both_engines!(an_accepted_conversation_flows_both_ways);

async fn a_declined_offer_goes_to_another_agent(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let mut a = scene.socket("First").await;
    let mut b = scene.socket("Second").await;
    a.available().await;
    // Later available: less idle, so the first agent is offered first.
    b.available().await;
    let conversation = scene.visitor("anyone?", None).await;
    let offer = a.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["visitor"]["authenticated"], false);

    a.ok(json!({ "type": "decline", "conversationId": conversation }))
        .await;
    let revoked = a.expect("offerRevoked").await;
    assert_eq!(revoked["conversationId"], conversation.to_string());
    b.offer_of(conversation).await;
    // Declining twice is refused: it is no longer offered to the decliner.
    a.refused(
        json!({ "type": "decline", "conversationId": conversation }),
        "not_allowed",
    )
    .await;
    // The second agent declines too: nobody is left, and it is not offered
    // back to the first.
    b.ok(json!({ "type": "decline", "conversationId": conversation }))
        .await;
    b.expect("offerRevoked").await;
    a.none_within(Duration::from_millis(500), |f| f["type"] == "offer")
        .await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Waiting { .. }
    ));
}
on_both_engines!(a_declined_offer_goes_to_another_agent);

async fn the_longest_idle_agent_is_offered_first(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let mut a = scene.socket("First").await;
    let mut b = scene.socket("Second").await;
    // The second agent has been idle longer.
    b.available().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.available().await;
    let one = scene.visitor("one", None).await;
    b.offer_of(one).await;
    // The next goes to the one with nothing to do, though it went available later.
    let two = scene.visitor("two", None).await;
    a.offer_of(two).await;
    b.none_within(Duration::from_millis(300), |f| f["type"] == "offer")
        .await;
}
on_both_engines!(the_longest_idle_agent_is_offered_first);

async fn capacity_is_respected(kind: EngineKind) {
    let scene = Scene::with(
        Setup::new(kind),
        json!({ "name": "One at a time", "agentCapacity": 1 }),
    )
    .await;
    let app = &scene.app;
    let mut agent = scene.socket("Solo").await;
    agent.available().await;
    let one = scene.visitor("one", None).await;
    agent.offer_of(one).await;
    let two = scene.visitor("two", None).await;
    agent
        .ok(json!({ "type": "accept", "conversationId": one }))
        .await;
    agent
        .none_within(Duration::from_millis(500), |f| f["type"] == "offer")
        .await;
    assert!(matches!(
        conversation_state(app, two).await,
        ConversationState::Waiting { .. }
    ));
    // Ending the first frees the capacity for the second.
    agent
        .ok(json!({ "type": "end", "conversationId": one }))
        .await;
    agent.offer_of(two).await;
}
on_both_engines!(capacity_is_respected);

async fn an_unanswered_offer_times_out(kind: EngineKind) {
    let scene = Scene::with(
        Setup::new(kind),
        json!({ "name": "Fast", "offerTimeoutSeconds": 5 }),
    )
    .await;
    let mut a = scene.socket("Sleepy").await;
    a.available().await;
    let conversation = scene.visitor("hello?", None).await;
    a.offer_of(conversation).await;
    let mut b = scene.socket("Awake").await;
    b.available().await;

    // Nobody answers: after the timeout the offer is taken back, the agent
    // who let it lapse is set away, and the conversation goes to the other.
    let revoked = a.expect("offerRevoked").await;
    assert_eq!(revoked["conversationId"], conversation.to_string());
    let presence = a.expect("presence").await;
    assert_eq!(presence["status"], "away");
    b.offer_of(conversation).await;
    b.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
}
on_both_engines!(an_unanswered_offer_times_out);

async fn a_lost_agent_loses_its_conversations(kind: EngineKind) {
    let setup = Setup::new(kind).set("SWITCHBOARD_AGENT_GRACE_SECONDS", "1");
    let scene = Scene::with(setup, json!({ "name": "Support" })).await;
    let app = &scene.app;
    let mut a = scene.socket("Flaky").await;
    a.available().await;
    let conversation = scene.visitor("help", None).await;
    a.offer_of(conversation).await;
    a.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    a.ok(json!({ "type": "send", "conversationId": conversation, "text": "on it" }))
        .await;

    // A live socket keeps its agent however short the grace period.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Connected { .. }
    ));

    let mut b = scene.socket("Steady").await;
    b.available().await;
    a.close().await;
    // After the grace period the conversation is re-queued to the other
    // agent, history and all.
    b.offer_of(conversation).await;
    b.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let history = b
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    let texts: Vec<&Value> = history["result"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("text"))
        .collect();
    assert_eq!(texts, [&json!("help"), &json!("on it")]);
    let log = log_of(app, conversation).await;
    assert!(log.contains(&EventBody::presence(PresenceKind::Leave)));
}
on_both_engines!(a_lost_agent_loses_its_conversations);

async fn conversations_transfer_to_queues_and_agents(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let billing = create_queue(app, &scene.admin, json!({ "name": "Billing" })).await;
    let (_, first) = scene.agent("First").await;
    let (second_id, second) = scene.agent("Second").await;
    let (third_agent, third) = scene.agent("Third").await;
    let (mut a, _) = app.agent(&first).await;
    a.ok(json!({ "type": "setPresence", "status": "available", "queueIds": [scene.queue] }))
        .await;
    let conversation = scene.visitor("my invoice is wrong", None).await;
    a.offer_of(conversation).await;
    a.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;

    // To a queue: an agent of that queue is offered it.
    let (mut b, _) = app.agent(&second).await;
    let presence = b
        .ok(json!({ "type": "setPresence", "status": "available", "queueIds": [billing] }))
        .await;
    assert_eq!(presence["result"]["queues"], json!([billing.to_string()]));
    a.refused(
        json!({ "type": "transfer", "conversationId": conversation }),
        "bad_request",
    )
    .await;
    a.refused(
        json!({ "type": "transfer", "conversationId": conversation, "queueId": Uuid::new_v4() }),
        "not_found",
    )
    .await;
    let moved = a
        .ok(json!({ "type": "transfer", "conversationId": conversation, "queueId": billing }))
        .await;
    assert_eq!(
        moved["result"]["conversation"]["queueId"],
        billing.to_string()
    );
    a.until("the conversation removed", |f| {
        f["type"] == "removed" && f["conversationId"] == conversation.to_string()
    })
    .await;
    let offer = b.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["queueId"], billing.to_string());
    b.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let log = log_of(app, conversation).await;
    assert!(log.contains(&EventBody::Transfer {
        queue_id: Some(billing),
        agent_id: None
    }));

    // To an agent: offered to that agent directly, even one who is away.
    let (mut c, _) = app.agent(&third).await;
    b.refused(
        json!({ "type": "transfer", "conversationId": conversation, "agentId": second_id }),
        "bad_request",
    )
    .await;
    b.ok(json!({ "type": "transfer", "conversationId": conversation, "agentId": third_agent }))
        .await;
    let offer = c.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["state"], "offered");
    c.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Connected { agent_id, .. } if agent_id == third_agent
    ));
}
on_both_engines!(conversations_transfer_to_queues_and_agents);

/// `directory` names where a conversation can go: every queue of the
/// organization, and its other connected agents; nothing of another
/// organization, nobody offline, not the asker.
async fn the_directory_names_transfer_targets(kind: EngineKind) {
    let setup = Setup::new(kind).set("SWITCHBOARD_AGENT_GRACE_SECONDS", "1");
    let scene = Scene::with(setup, json!({ "name": "Support" })).await;
    let app = &scene.app;
    let billing = create_queue(app, &scene.admin, json!({ "name": "Billing" })).await;
    let (_, first) = scene.agent("First").await;
    let (second_id, second) = scene.agent("Second").await;
    // An agent that never connects is never listed.
    scene.agent("Never connected").await;
    let other_admin = app.other_organization("Other Corp").await;
    create_queue(app, &other_admin, json!({ "name": "Elsewhere" })).await;
    let (_, stranger) = app.client(&other_admin, "Stranger", &["agent"]).await;

    let (mut a, _) = app.agent(&first).await;
    let (mut b, _) = app.agent(&second).await;
    let (mut s, _) = app.agent(&stranger).await;
    s.available().await;
    b.available().await;

    let directory = a.ok(json!({ "type": "directory" })).await;
    assert_eq!(
        directory["result"]["queues"],
        json!([
            { "id": billing, "name": "Billing" },
            { "id": scene.queue, "name": "Support" },
        ])
    );
    assert_eq!(
        directory["result"]["agents"],
        json!([{ "id": second_id, "name": "Second", "status": "available" }])
    );

    // Away is still a target (an agent may hand a conversation to a
    // colleague on a break) and says so.
    b.ok(json!({ "type": "setPresence", "status": "away" }))
        .await;
    let directory = a.ok(json!({ "type": "directory" })).await;
    assert_eq!(
        directory["result"]["agents"],
        json!([{ "id": second_id, "name": "Second", "status": "away" }])
    );

    // Once Second's only socket is gone and its grace period (1 s here)
    // has passed, the sweeper takes it offline: no longer a target.
    b.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let directory = a.ok(json!({ "type": "directory" })).await;
        if directory["result"]["agents"] == json!([]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Second is still listed: {directory}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
on_both_engines!(the_directory_names_transfer_targets);
