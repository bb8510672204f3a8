//! The protocol of the guest socket: admission on the upgrade, every action
//! and error code, the rate limit, and hostile frames.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::routing::model::session_id;
use uuid::Uuid;

use crate::on_both_engines;
use switchboard::limits;

use crate::support::app::{EngineKind, Setup, TestApp};
use crate::support::guest::{assert_error, assert_session, assert_too_many, new_token, seq};
use crate::support::idp::SHOP_ORIGIN;
use crate::support::ws::refused;

async fn upgrade_is_refused_for_bad_origins_and_deployments(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    for (deployment, origin) in [
        (site.deployment.clone(), "https://evil.example.com"),
        (Uuid::new_v4().to_string(), SHOP_ORIGIN),
        ("not-a-uuid".to_owned(), SHOP_ORIGIN),
    ] {
        let upgrade = app.guest_from(&deployment, "t", Some(origin)).await;
        assert_eq!(
            refused(upgrade),
            StatusCode::FORBIDDEN,
            "{deployment} from {origin}"
        );
    }

    // An inactive deployment takes no guests.
    let path = format!("/api/v2/webdeployments/deployments/{}", site.deployment);
    let mut body = app.get(&path, &site.admin).await.expect(StatusCode::OK);
    body["status"] = json!("Inactive");
    app.put(&path, &site.admin, body)
        .await
        .expect(StatusCode::OK);
    let upgrade = app
        .guest_from(&site.deployment, "t", Some(SHOP_ORIGIN))
        .await;
    assert_eq!(refused(upgrade), StatusCode::FORBIDDEN);

    // A plain GET (no upgrade) on an active deployment is not a socket.
    let other = app.guest_site().await;
    let reply = app
        .call(
            Method::GET,
            &format!("/v1?deploymentId={}", other.deployment),
            None,
            None,
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.text);

    // Native apps send no Origin.
    let mut native = app.guest_from(&other.deployment, "t", None).await.unwrap();
    let answer = native
        .ask(json!({"action":"echo","token":"t","message":{"type":"Text","text":"hi"}}))
        .await;
    assert_eq!(answer["class"], "StructuredMessage");
}
on_both_engines!(upgrade_is_refused_for_bad_origins_and_deployments);

// ---- actions and errors -----------------------------------------------------

async fn every_action_and_error_code(kind: EngineKind) {
    // The message rate getConfiguration reports is the one in force.
    let setup = Setup::new(kind).set(limits::ENV_GUEST_MESSAGES, "5/s burst 10");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let mut guest = app.guest(&site.deployment, &new_token()).await;
    let t = guest.token.clone();

    // Before configureSession, a message has no session.
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text","text":"hi"}}))
        .await;
    assert_error(&answer, 4007);

    // configureSession.
    let answer = guest.configure_with(json!({ "tracingId": "cfg-1" })).await;
    assert_eq!(answer["tracingId"], "cfg-1");
    let body = assert_session(&answer);
    assert_eq!(body["connected"], true);
    assert_eq!(body["newSession"], true);
    assert_eq!(body["readOnly"], false);
    assert_eq!(body["clearedExistingSession"], false);
    assert_eq!(body["maxCustomDataBytes"], 2048);
    assert!(body["allowedMedia"]["inbound"]["fileTypes"].is_array());
    assert!(
        body["blockedExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == ".exe")
    );
    assert_eq!(body["durationSeconds"], 1800);
    assert!(body["expirationDate"].as_i64().unwrap() > Utc::now().timestamp());
    // Configuring again finds the same session.
    let body = assert_session(&guest.configure().await).clone();
    assert_eq!(body["newSession"], false);

    // echo answers the text with the same tracing id.
    let answer = guest
        .ask(json!({"action":"echo","token":t,"tracingId":"e-1","message":{"type":"Text","text":"ping"}}))
        .await;
    assert_eq!(answer["type"], "response");
    assert_eq!(answer["class"], "StructuredMessage");
    assert_eq!(answer["body"]["text"], "ping");
    assert_eq!(answer["tracingId"], "e-1");

    // 400: malformed JSON, not an object, an unknown action, a wrong type.
    guest.send_text("{not json".to_owned()).await;
    assert_error(&guest.next().await, 400);
    guest.send_text("[1,2]".to_owned()).await;
    assert_error(&guest.next().await, 400);
    let answer = guest
        .ask(json!({"action":"dance","token":t,"tracingId":"u-1"}))
        .await;
    assert_error(&answer, 400);
    assert_eq!(answer["tracingId"], "u-1");
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","token":t,"message":"hi"}))
            .await,
        400,
    );
    guest.send_binary(vec![0xff, 0x00, 0x13]).await;
    assert_error(&guest.next().await, 400);

    // 4020: missing fields.
    assert_error(&guest.ask(json!({"token":t})).await, 4020);
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","message":{"type":"Text","text":"x"}}))
            .await,
        4020,
    );
    assert_error(
        &guest.ask(json!({"action":"onMessage","token":t})).await,
        4020,
    );
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text"}}))
            .await,
        4020,
    );
    assert_error(
        &guest
            .ask(json!({"action":"configureSession","token":t}))
            .await,
        4020,
    );
    assert_error(
        &guest.ask(json!({"action":"configureAuthenticatedSession","token":t,"deploymentId":site.deployment})).await,
        4020,
    );

    // 4011: text over 4000 characters.
    let long = "x".repeat(4001);
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text","text":long}}))
            .await,
        4011,
    );
    // 4013: custom attributes over 2048 bytes.
    let attributes: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("attribute{i}"), json!("v".repeat(32))))
        .collect();
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":t,"message":{"type":"Text","text":"hi",
            "channel":{"metadata":{"customAttributes":attributes}}}}),
        )
        .await;
    assert_error(&answer, 4013);
    // 4000: attachments, off in this configuration; 400 for one named
    // without its id.
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":t,"message":{"type":"Text","text":"",
            "content":[{"contentType":"Attachment","attachment":{"id":"a-1"}}]}}),
        )
        .await;
    assert_error(&answer, 4000);
    let answer = guest
        .ask(
            json!({"action":"onAttachment","token":t,"attachmentId":"a-1",
            "fileName":"y.png","fileType":"image/png","fileSize":10}),
        )
        .await;
    assert_eq!(answer["class"], "GenerateUrlError", "{answer}");
    assert_eq!(answer["body"]["errorCode"], 4000, "{answer}");
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":t,"message":{"type":"Structured",
            "content":[{"contentType":"Attachment","attachment":{"url":"https://x/y.png"}}]}}),
        )
        .await;
    assert_error(&answer, 400);
    // A token over 2048 characters.
    assert_error(
        &guest
            .ask(json!({"action":"getJwt","token":"t".repeat(2049)}))
            .await,
        400,
    );
    // Another session's token on this socket.
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":new_token(),"message":{"type":"Text","text":"hi"}}),
        )
        .await;
    assert_error(&answer, 403);
    // Another deployment's id on this socket.
    let answer = guest
        .ask(json!({"action":"configureSession","token":t,"deploymentId":Uuid::new_v4()}))
        .await;
    assert_error(&answer, 403);

    // The socket is still usable: a message with custom attributes in the
    // limit is answered with its sequence.
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"tracingId":"m-1","message":{"type":"Text","text":"hello",
            "channel":{"metadata":{"customAttributes":{"orderId":"42"}}}}}))
        .await;
    // The echo of one's own message is a `message`, as Genesys sends it.
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["tracingId"], "m-1");
    assert_eq!(answer["body"]["direction"], "Inbound");
    assert_eq!(answer["body"]["text"], "hello");
    assert_eq!(
        answer["body"]["channel"]["metadata"]["customAttributes"]["orderId"],
        "42"
    );
    assert_eq!(seq(&answer), 1);
    assert!(answer["body"]["conversationId"].as_str().is_some());
    assert_eq!(
        answer["body"]["metadata"]["conversationId"],
        answer["body"]["conversationId"]
    );

    // Structured content.
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":t,"message":{"type":"Structured","text":"pick",
            "content":[{"contentType":"QuickReply","quickReply":{"text":"Yes","payload":"yes"}}]}}),
        )
        .await;
    assert_eq!(answer["body"]["type"], "Structured");
    assert_eq!(answer["body"]["content"][0]["quickReply"]["payload"], "yes");
    assert_eq!(seq(&answer), 2);

    // getConfiguration.
    let answer = guest
        .ask(json!({"action":"getConfiguration","token":t,"deploymentId":site.deployment,"tracingId":"c-1"}))
        .await;
    assert_eq!(answer["class"], "ConfigurationResponse");
    assert_eq!(answer["tracingId"], "c-1");
    assert_eq!(answer["body"]["maxCustomDataBytes"], 2048);
    assert_eq!(answer["body"]["maxTextLength"], 4000);
    assert_eq!(answer["body"]["messagesPerSecond"], 5);
    assert_eq!(answer["body"]["sessionDurationSeconds"], 1800);
    assert_eq!(answer["body"]["authenticationRequired"], false);

    // getJwt.
    let answer = guest
        .ask(json!({"action":"getJwt","token":t,"tracingId":"j-1"}))
        .await;
    assert_eq!(answer["class"], "JwtResponse");
    assert_eq!(answer["tracingId"], "j-1");
    assert!(
        answer["body"]["jwt"]
            .as_str()
            .is_some_and(|j| j.split('.').count() == 3)
    );
    assert!(answer["body"]["exp"].as_i64().unwrap() > Utc::now().timestamp());

    // Typing is answered but not logged.
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Typing","typing":{"type":"On"}}]}}))
        .await;
    assert_eq!(answer["body"]["type"], "Event");
    assert_eq!(answer["body"]["events"][0]["eventType"], "Typing");
    assert!(answer["body"].get("sequence").is_none());
    let conversation: Uuid = app
        .state()
        .routing
        .session(app.org(), session_id(&t))
        .await
        .unwrap()
        .unwrap()
        .conversation_id
        .unwrap();
    assert_eq!(app.state().routing.last_seq(conversation).await.unwrap(), 2);
}
on_both_engines!(every_action_and_error_code);

async fn rate_limit_answers_4029_with_retry_after(kind: EngineKind) {
    // A bucket that refills once a minute: what is refused does not depend
    // on how fast this machine sends.
    let setup = Setup::new(kind).set(limits::ENV_GUEST_MESSAGES, "1/min burst 3");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let t = new_token();
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    // Another tab of the same session and another session, ready before
    // the burst so that they speak right after it, in the same window.
    let mut tab = app.configured_guest(&site.deployment, &t).await;
    let mut other = app.configured_guest(&site.deployment, &new_token()).await;

    let mut limited = Vec::new();
    for i in 0..6 {
        let answer = guest.say(&format!("message {i}")).await;
        if answer["code"] == 429 {
            limited.push(answer);
        } else {
            assert_eq!(answer["class"], "StructuredMessage", "{answer}");
        }
    }
    assert!(
        !limited.is_empty(),
        "six messages at once were all accepted"
    );
    assert_too_many(&limited[0]);
    // The limit is the session's: the other tab shares the spent budget
    // (its answer comes after the pushes of the first tab's messages),
    // another session does not.
    let frame = tab.text_frame("from the other tab");
    assert_too_many(&tab.answer(frame).await);
    assert_eq!(seq(&other.say("unaffected").await), 1);
}
on_both_engines!(rate_limit_answers_4029_with_retry_after);

async fn oversized_frames_close_with_1009_and_garbage_harms_no_one(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let mut bystander = app.configured_guest(&site.deployment, &new_token()).await;
    let mut hostile = app.configured_guest(&site.deployment, &new_token()).await;

    for garbage in [
        "".to_owned(),
        "\u{0}".to_owned(),
        "{\"action\":{\"nested\":[[[[[]]]]]}}".to_owned(),
        "{\"action\":\"onMessage\",\"token\":\"x\",\"message\":{\"type\":\"Event\",\"events\":[{\"eventType\":\"Presence\",\"presence\":{\"type\":[]}}]}}".to_owned(),
        "9".repeat(5000),
        "[".repeat(10_000),
    ] {
        hostile.send_text(garbage).await;
        let answer = hostile.next().await;
        assert_eq!(answer["type"], "response", "{answer}");
        assert!(answer["code"] == 400 || answer["code"] == 4020, "{answer}");
    }
    // The bystander is not affected.
    assert_eq!(seq(&bystander.say("still here").await), 1);

    // Over the frame limit: closed with 1009.
    hostile.send_text("x".repeat(70_000)).await;
    assert_eq!(hostile.closed().await, 1009);
    // Still not affected.
    assert_eq!(seq(&bystander.say("and still").await), 2);
    bystander.fence().await;
}
on_both_engines!(oversized_frames_close_with_1009_and_garbage_harms_no_one);
