//! The guest history endpoint reads only the page asked for: after an
//! agent wrote many large messages, a page of 1 reads one log entry, not
//! the log (counted by the node's `history_log_entries_read` metric, on
//! both engines). Deeper pages read down to their own end and no further.

use reqwest::StatusCode;
use serde_json::json;

use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};
use crate::support::guest::new_token;

/// Agent messages written, each of the agent's largest size.
const LARGE_MESSAGES: usize = 24;

/// The node's count of log entries read for history so far.
async fn entries_read(app: &TestApp) -> u64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("switchboard_history_log_entries_read_total "))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no history metric in {text}"))
}

async fn a_page_of_one_reads_one_entry_not_the_log(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    guest.say("hello").await;
    // Valid 10 minutes: taken before the agent's messages reach the socket.
    let jwt = guest.jwt().await;
    let (_, token) = app.client(&site.admin, "Agent", &["agent"]).await;
    let (mut agent, _) = app.agent(&token).await;
    agent.available().await;
    let conversation = agent.accept_first_offer().await;
    let large = "x".repeat(3990);
    for i in 0..LARGE_MESSAGES {
        agent
            .ok(json!({ "type": "send", "conversationId": conversation,
                        "text": format!("{i:04}{large}"), "id": format!("m{i}") }))
            .await;
    }
    let last = format!("{:04}{large}", LARGE_MESSAGES - 1);
    let logged = app
        .state()
        .routing
        .last_seq(conversation.parse().unwrap())
        .await
        .unwrap();
    assert!(logged > LARGE_MESSAGES as u64, "{logged} entries logged");

    let before = entries_read(&app).await;
    let page = app
        .get(
            "/api/v2/webmessaging/messages?pageNumber=1&pageSize=1",
            &jwt,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["entities"].as_array().unwrap().len(), 1);
    assert_eq!(page["entities"][0]["text"], last.as_str());
    assert_eq!(
        entries_read(&app).await - before,
        1,
        "a page of 1 reads 1 entry"
    );
    // More pages are announced: the client keeps paging.
    assert!(page["total"].as_u64().unwrap() > LARGE_MESSAGES as u64);

    // The third page of 5 reads down to its own end (15 messages), not the
    // 24 and more of the log.
    let before = entries_read(&app).await;
    let page = app
        .get(
            "/api/v2/webmessaging/messages?pageNumber=3&pageSize=5",
            &jwt,
        )
        .await
        .expect(StatusCode::OK);
    let texts: Vec<&str> = page["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["text"].as_str().unwrap()[..4])
        .collect();
    let newest = LARGE_MESSAGES - 1;
    let expected: Vec<String> = (10..15).map(|i| format!("{:04}", newest - i)).collect();
    assert_eq!(texts, expected);
    let read = entries_read(&app).await - before;
    assert!(
        (15..=20).contains(&read),
        "{read} entries read for messages 11 to 15"
    );

    // The whole history, page after page, is every message once, and the
    // last page's total is exact.
    let mut all = Vec::new();
    let mut number = 1;
    let total = loop {
        let page = app
            .get(
                &format!("/api/v2/webmessaging/messages?pageNumber={number}&pageSize=25"),
                &jwt,
            )
            .await
            .expect(StatusCode::OK);
        let entities = page["entities"].as_array().unwrap().clone();
        if entities.len() < 25 {
            all.extend(entities);
            break page["total"].as_u64().unwrap();
        }
        all.extend(entities);
        number += 1;
    };
    // The visitor's message, the agent's join (an event message, as
    // Genesys sends presence) and the agent's messages, each once.
    assert_eq!(all.len(), LARGE_MESSAGES + 2);
    assert_eq!(total, LARGE_MESSAGES as u64 + 2);
    let mut ids: Vec<&str> = all.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len());
    assert_eq!(all.last().unwrap()["text"], "hello");
}
on_both_engines!(a_page_of_one_reads_one_entry_not_the_log);
