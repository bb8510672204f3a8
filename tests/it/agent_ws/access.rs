//! Who may read what: agents only what they hold or were offered,
//! supervisors their queues', other organizations nothing.

use std::time::Duration;

use serde_json::json;
use switchboard::routing::model::ConversationState;
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::app::EngineKind;

use super::{Scene, conversation_state, create_queue, verified_visitor};

async fn agents_read_only_what_they_hold(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, holder) = scene.agent("Holder").await;
    let (_, bystander) = scene.agent("Bystander").await;
    let (_, supervisor) = scene.client("Supervisor", &["agent", "supervisor"]).await;
    let conversation = scene
        .visitor("private matter", Some(verified_visitor()))
        .await;

    let (mut by, _) = app.agent(&bystander).await;
    // Never offered it: no history, no accept, no messages; the answers are
    // those for a conversation that does not exist.
    by.refused(
        json!({ "type": "history", "conversationId": conversation }),
        "not_found",
    )
    .await;
    by.refused(
        json!({ "type": "history", "conversationId": Uuid::new_v4() }),
        "not_found",
    )
    .await;
    by.refused(
        json!({ "type": "accept", "conversationId": conversation }),
        "not_allowed",
    )
    .await;
    by.refused(
        json!({ "type": "send", "conversationId": conversation, "text": "peek" }),
        "not_allowed",
    )
    .await;
    by.refused(
        json!({ "type": "typing", "conversationId": conversation }),
        "not_allowed",
    )
    .await;

    let (mut holder, _) = app.agent(&holder).await;
    holder.available().await;
    holder.offer_of(conversation).await;
    // Offered: readable by its holder.
    holder
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    by.refused(
        json!({ "type": "history", "conversationId": conversation }),
        "not_found",
    )
    .await;

    // A supervisor reads the conversations of its queues.
    let (mut sup, snapshot) = app.agent(&supervisor).await;
    assert_eq!(snapshot["agent"]["supervisor"], true);
    let history = sup
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    assert_eq!(history["result"]["events"][0]["text"], "private matter");
    // The bystander never saw any of it.
    by.none_within(Duration::from_millis(300), |f| {
        f.to_string().contains(&conversation.to_string())
    })
    .await;
}
on_both_engines!(agents_read_only_what_they_hold);

async fn other_organizations_see_nothing(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let other_admin = app.other_organization("Other Corp").await;
    let other_queue = create_queue(app, &other_admin, json!({ "name": "Their support" })).await;
    let (_, outsider) = app.client(&other_admin, "Outsider", &["admin"]).await;
    let conversation = scene.visitor("ours", Some(verified_visitor())).await;

    let (mut out, _) = app.agent(&outsider).await;
    let presence = out.available().await;
    assert_eq!(
        presence["result"]["queues"],
        json!([other_queue.to_string()])
    );
    // Another organization's queue cannot be named.
    out.refused(
        json!({ "type": "setPresence", "status": "available", "queueIds": [scene.queue] }),
        "not_found",
    )
    .await;
    for frame in [
        json!({ "type": "history", "conversationId": conversation }),
        json!({ "type": "accept", "conversationId": conversation }),
        json!({ "type": "decline", "conversationId": conversation }),
        json!({ "type": "end", "conversationId": conversation }),
        json!({ "type": "transfer", "conversationId": conversation, "queueId": other_queue }),
    ] {
        out.refused(frame, "not_found").await;
    }
    out.refused(
        json!({ "type": "send", "conversationId": conversation, "text": "hi" }),
        "not_found",
    )
    .await;
    out.none_within(Duration::from_millis(500), |f| f["type"] == "offer")
        .await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Waiting { .. }
    ));
    // The outsider's admin role makes it a supervisor, of its own queues only.
    out.refused(
        json!({ "type": "history", "conversationId": conversation }),
        "not_found",
    )
    .await;
}
on_both_engines!(other_organizations_see_nothing);
