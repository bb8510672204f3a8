//! Identity claims as the IdP verified them. An ID token whose
//! `email_verified` is false (or missing, or not a boolean true) reaches the
//! agent as the visitor's `unverifiedEmail`, never as `email`, and never as
//! the name agents call the visitor by (signed by the hostile IdP, so the
//! claims are exactly as an IdP with self-registration would send them).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};
use crate::support::guest::new_token;
use crate::support::hostile_idp::HostileIdp;
use crate::support::site::SiteSpec;

const CLIENT_ID: &str = "switchboard-web";
const EXCHANGE: &str = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange";

async fn unverified_emails_never_reach_agents_as_verified(kind: EngineKind) {
    let idp = HostileIdp::start().await;
    let app = TestApp::spawn(kind).await;
    let site = app
        .site(
            &SiteSpec::new()
                .integration(json!({
                    "name": "Self-service IdP", "issuer": idp.issuer, "clientId": CLIENT_ID,
                    "clientSecret": "hostile-idp-client-secret-0123456789",
                }))
                .queue(json!({ "name": "Support", "agentCapacity": 10 })),
        )
        .await;
    let (_, token) = app.client(&site.admin, "Agent", &["agent"]).await;
    let (mut agent, _) = app.agent(&token).await;
    agent.available().await;

    // (email_verified as sent, whether it counts as verified)
    let cases = [
        (json!(false), false),
        (Value::Null, false),
        (json!("no"), false),
        (json!(true), true),
    ];
    for (i, (verified, counts)) in cases.into_iter().enumerate() {
        let mut claims = idp.claims(CLIENT_ID);
        let object = claims.as_object_mut().unwrap();
        object.insert("sub".to_owned(), json!(format!("self-registered-{i}")));
        object.insert("email".to_owned(), json!("ceo@example.com"));
        for name in ["name", "given_name", "family_name"] {
            object.remove(name);
        }
        if verified.is_null() {
            object.remove("email_verified");
        } else {
            object.insert("email_verified".to_owned(), verified.clone());
        }
        let pair = app
            .call(
                Method::POST,
                EXCHANGE,
                None,
                Some(json!({ "deploymentId": site.deployment, "oauth": { "idToken": idp.sign(&claims) } })),
            )
            .await
            .expect(StatusCode::OK);
        let mut guest = app.guest(&site.deployment, &new_token()).await;
        guest.authenticate(pair["jwt"].as_str().unwrap()).await;
        let answer = guest.say("hello").await;
        let conversation: Uuid = answer["body"]["conversationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .parse()
            .unwrap();

        let offer = agent.offer_of(conversation).await;
        let visitor = &offer["conversation"]["visitor"];
        assert_eq!(visitor["authenticated"], true, "{visitor}");
        assert_eq!(visitor["subject"], format!("self-registered-{i}"));
        assert_eq!(visitor["emailVerified"], counts, "{verified}: {visitor}");
        if counts {
            assert_eq!(visitor["email"], "ceo@example.com", "{visitor}");
            assert!(visitor.get("unverifiedEmail").is_none(), "{visitor}");
            assert_eq!(visitor["displayName"], "ceo@example.com");
        } else {
            assert!(visitor.get("email").is_none(), "{verified}: {visitor}");
            assert_eq!(visitor["unverifiedEmail"], "ceo@example.com");
            assert_eq!(visitor["displayName"], "Visitor", "{verified}: {visitor}");
        }
    }
}
on_both_engines!(unverified_emails_never_reach_agents_as_verified);
