//! Structured content both ways (G9, G10): quick replies, cards and
//! carousels an agent sends reach the SDK in shapes it decodes (and turns
//! into quick replies or cards); the SDK's answers (a quick reply, a time
//! slot, a card button) are accepted, echoed with their tracingId and shown
//! to the agent with their content; invalid content is refused at the
//! agent's edge with `invalid_content`.

use serde_json::{Value, json};

use super::client::SdkClient;
use super::sdk::{Content, MessageType};
use super::*;
use crate::on_both_engines;
use crate::support::agent::Agent;
use crate::support::app::{EngineKind, TestApp};

fn card(title: &str) -> Value {
    json!({ "title": title, "description": "Sea view", "image": "https://img.example.com/room.png",
        "defaultAction": { "type": "Link", "text": "Open", "url": "https://hotel.example.com/rooms" },
        "actions": [
            { "type": "Link", "text": "Details", "url": "https://hotel.example.com/rooms/1" },
            { "type": "Postback", "text": "Book Now", "payload": "book-1" },
        ] })
}

/// Sends `content` (and `text`) into `conversation`; answers the response.
async fn send(agent: &mut Agent, conversation: &str, text: Option<&str>, content: Value) -> Value {
    let mut frame = json!({ "type": "send", "conversationId": conversation, "content": content });
    if let Some(text) = text {
        frame["text"] = json!(text);
    }
    agent.request(frame).await
}

async fn structured_content_both_ways(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    let configuration = published(&app, &admin, configuration(None, json!({}))).await;
    let id = deployment(
        &app,
        &admin,
        &configuration,
        json!({ "allowedAppHosts": [APP_SOCKET_HOST, APP_DOMAIN] }),
    )
    .await;
    let (_, token) = app.client(&admin, "Bot", &["agent"]).await;
    let (mut bot, _) = app.agent(&token).await;
    bot.available().await;
    let mut sdk = SdkClient::open(&app, &id).await;
    sdk.configure(false).await;
    let opened = sdk.request(sdk.text("I need a room")).await;
    let conversation = opened["body"]["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Offers are made after the answer, by the queue's assigner.
    bot.offer_of(conversation.parse().unwrap()).await;
    bot.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    sdk.message().await; // the bot's Join

    // Quick replies, with text.
    let answer = send(
        &mut bot,
        &conversation,
        Some("Which night?"),
        json!([
            { "contentType": "QuickReply", "quickReply": { "text": "Friday", "payload": "fri", "action": "Message" } },
            { "contentType": "QuickReply", "quickReply": { "text": "Saturday", "payload": "sat" } },
        ]),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let quick = sdk.message().await;
    assert_eq!(quick.body.kind, MessageType::Structured);
    assert_eq!(quick.body.direction, "Outbound");
    assert_eq!(quick.body.text.as_deref(), Some("Which night?"));
    let Content::QuickReply(first) = &quick.body.content[0] else {
        panic!("{:?}", quick.body.content)
    };
    assert_eq!(
        (
            first.quick_reply.text.as_str(),
            first.quick_reply.payload.as_str()
        ),
        ("Friday", "fri")
    );
    assert_eq!(first.quick_reply.action.as_deref(), Some("Message"));

    // The SDK's quick reply: Text, empty text, the answer; echoed with its
    // tracingId, and the agent reads it with its content.
    let frame = sdk.quick_reply("Friday", "fri", &quick.body.id);
    let tracing = frame["tracingId"].as_str().unwrap().to_owned();
    let echo: sdk::Frame<sdk::StructuredMessage> = decode(&sdk.request(frame).await);
    assert_eq!(echo.kind, "message");
    assert_eq!(echo.message_id(), tracing);
    assert_eq!(echo.body.direction, "Inbound");
    assert_eq!(echo.body.kind, MessageType::Text);
    let Content::ButtonResponse(reply) = &echo.body.content[0] else {
        panic!("{:?}", echo.body.content)
    };
    assert_eq!(reply.button_response.kind, "QuickReply");
    assert_eq!(
        reply.button_response.originating_message_id.as_deref(),
        Some(quick.body.id.as_str())
    );
    let event = bot
        .until("the quick reply", |f| {
            f["type"] == "event" && f["content"][0]["contentType"] == "ButtonResponse"
        })
        .await;
    assert_eq!(event["text"], "Friday");
    assert_eq!(event["messageType"], "Text");
    assert_eq!(event["content"][0]["buttonResponse"]["payload"], "fri");

    // A card and a carousel; the SDK's card button answer.
    let answer = send(
        &mut bot,
        &conversation,
        None,
        json!([{ "contentType": "Card", "card": card("Sea room") }]),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let cards = sdk.message().await;
    assert_eq!(cards.body.kind, MessageType::Structured);
    assert_eq!(cards.body.text, None);
    let Content::Card(room) = &cards.body.content[0] else {
        panic!("{:?}", cards.body.content)
    };
    assert_eq!(room.card.title, "Sea room");
    assert_eq!(room.card.actions.len(), 2);
    assert_eq!(
        room.card.actions[0].url.as_deref(),
        Some("https://hotel.example.com/rooms/1")
    );
    assert_eq!(room.card.actions[1].payload.as_deref(), Some("book-1"));
    assert!(room.card.default_action.is_some());
    let answer = send(
        &mut bot,
        &conversation,
        Some("Or these"),
        json!([{ "contentType": "Carousel", "carousel": { "cards": [card("One"), card("Two")] } }]),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let carousel = sdk.message().await;
    let Content::Carousel(carousel) = &carousel.body.content[0] else {
        panic!("{:?}", carousel.body.content)
    };
    assert_eq!(carousel.carousel.cards.len(), 2);
    let echo: sdk::Frame<sdk::StructuredMessage> =
        decode(&sdk.request(sdk.card_reply("Book Now", "book-1")).await);
    assert_eq!(echo.body.kind, MessageType::Structured);
    let event = bot
        .until("the card button", |f| {
            f["type"] == "event" && f["content"][0]["buttonResponse"]["type"] == "Button"
        })
        .await;
    assert_eq!(event["text"], "Book Now");
    assert_eq!(event["messageType"], "Structured");

    // A time slot (a DatePicker's answer).
    let slot = "2026-12-04T18:00:00Z";
    let echo: sdk::Frame<sdk::StructuredMessage> =
        decode(&sdk.request(sdk.time_slot(slot, &cards.body.id)).await);
    let Content::ButtonResponse(picked) = &echo.body.content[0] else {
        panic!("{:?}", echo.body.content)
    };
    assert_eq!(
        (
            picked.button_response.kind.as_str(),
            picked.button_response.payload.as_str()
        ),
        ("DatePicker", slot)
    );

    // Refused at the agent's edge, saying where and why.
    for (content, text, code, needle) in [
        (
            json!([{ "contentType": "Card", "card": { "title": "x",
                "actions": [{ "type": "Link", "text": "Go", "url": "javascript:alert(1)" }] } }]),
            None,
            "invalid_content",
            "content[0].card.actions[0].url",
        ),
        (
            json!([{ "contentType": "QuickReply", "quickReply": { "text": "No payload" } }]),
            None,
            "invalid_content",
            "payload",
        ),
        (
            // An attachment is named by the id of an upload of one's own.
            json!([{ "contentType": "Attachment", "attachment": { "url": "https://x.example.com/a" } }]),
            Some("file"),
            "invalid_content",
            "`id`",
        ),
        (
            Value::Array(
                (0..12)
                    .map(|i| json!({ "contentType": "QuickReply", "quickReply": { "text": format!("{i}"), "payload": "p" } }))
                    .collect(),
            ),
            None,
            "invalid_content",
            "at most 11 quick replies",
        ),
        (json!([]), None, "bad_request", "text is empty"),
    ] {
        let answer = send(&mut bot, &conversation, text, content).await;
        assert_eq!(answer["ok"], false, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }

    // History holds the structured messages, and the SDK decodes the page.
    let jwt: sdk::Frame<sdk::JwtResponse> = decode(&sdk.request(sdk.get_jwt()).await);
    let page = app
        .http
        .get(app.url(HISTORY))
        .header("authorization", format!("bearer {}", jwt.body.jwt))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_no_nulls(&page, "page");
    let page: sdk::MessageEntityList = decode(&page);
    let structured = page
        .entities
        .iter()
        .filter(|e| !e.content.is_empty())
        .count();
    // Quick replies, card, carousel, and three answers.
    assert_eq!(structured, 6);
}
on_both_engines!(structured_content_both_ways);
