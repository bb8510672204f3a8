//! The guest WebSocket (`/v1`) and the guest history endpoint end to end, on
//! both engines: admission on the upgrade, every action, every error code
//! and the rate limit ([`protocol`]); sequenced delivery with resume and
//! idempotent resends ([`delivery`]); multi-tab sessions, isolation, the
//! history, authenticated sessions (JWTs issued through the node's
//! `VisitorTokens`), logout and shutdown ([`sessions`]). Agents are driven
//! through routing directly.

mod delivery;
mod protocol;
mod round_trips;
mod sessions;

use chrono::Utc;
use secrecy::ExposeSecret;
use switchboard::auth::visitor_token::{SessionClaims, SessionGrant, VisitorIdentity};
use uuid::Uuid;

use crate::support::app::TestApp;
use crate::support::site::{Site, SiteSpec, integration_body};

/// A deployment with an OIDC integration: `required` requires sign-in,
/// `upgrade` lets a guest session sign in in place.
async fn auth_site(app: &TestApp, required: bool, upgrade: bool) -> Site {
    let spec = SiteSpec::new()
        .integration(integration_body("Shop IdP"))
        .sign_in(required)
        .session_upgrade(upgrade);
    app.site(&spec).await
}

/// A session JWT for `deployment` as the exchange would issue it.
async fn session_jwt(app: &TestApp, deployment: &str, subject: &str) -> (String, SessionClaims) {
    let grant = SessionGrant {
        deployment: deployment.parse().unwrap(),
        org: app.state().auth.default_org(),
        identity: VisitorIdentity {
            issuer: "https://idp.example.com/".to_owned(),
            subject: subject.to_owned(),
            email: Some(format!("{subject}@example.com")),
            email_verified: Some(true),
            name: None,
            given_name: Some("Grace".to_owned()),
            family_name: Some("Hopper".to_owned()),
        },
        sid: Uuid::new_v4(),
        not_after: Utc::now() + chrono::Duration::hours(1),
    };
    let issued = app
        .state()
        .visitor_tokens
        .issue(&grant, Utc::now())
        .await
        .unwrap();
    (issued.jwt.expose_secret().to_owned(), issued.claims)
}
