//! Genesys compatibility: the requests Genesys's Messenger Transport SDK
//! sends, replayed as it sends them, and every answer decoded by the SDK's
//! rules (`sdk` mirrors its receive models: unknown keys ignored, required
//! fields required, enums closed, no `null` where it does not allow one;
//! `client` is the SDK on the socket, checking every frame it receives).
//! See docs/compatibility.md.
//!
//! Covered: config.json (G1), native app Origins on the socket upgrade and
//! history (G2), the code exchange with an app's private-use redirect
//! scheme (G4), refresh with `{"refreshToken"}` alone, with and without
//! rotation (G3), push device registration with its error body; on the
//! socket, a conversation with agents, the health check and history (G8,
//! G11, G13), a new chat after a read-only end (G7), custom attributes
//! (G12), clearing and close frames (G14, G15), structured content both
//! ways (G9, G10), and signed-in sessions: code and implicit, refresh,
//! the refusals, logout and step-up (G5, G6); attachments (G17): upload,
//! send, the agent's copy, download, refusals by type, size and sniffed
//! content, delete, and their lifecycle, on Redis with a real S3 server.

use std::sync::OnceLock;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchboard::auth::oidc::pkce_pair;
use switchboard::store::push_devices::{DeviceType, PushProvider};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::support::app::{Reply, TestApp};
use crate::support::idp::{self, TestIdp};

mod apps;
mod attachments;
mod auth;
mod client;
mod config_json;
mod push;
mod refresh;
mod sdk;
mod socket;
mod structured;

const EXCHANGE: &str = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange";
const REFRESH: &str = "/api/v2/webdeployments/token/refresh";
const REVOKE: &str = "/api/v2/webdeployments/token/revoke";
const HISTORY: &str = "/api/v2/webmessaging/messages?pageNumber=1&pageSize=25";
/// The `domain` the app is configured with, and the hosts it derives.
const APP_DOMAIN: &str = "chat.example.com";
const APP_SOCKET_HOST: &str = "webmessaging.chat.example.com";
const APP_SCHEME: &str = "com.example.app";
const APP_REDIRECT: &str = "com.example.app:/callback";
const SHOP: &str = "https://shop.example.com";
/// What `DeploymentIdMismatch` (6027) is recognised by.
const MISMATCH: &str =
    "Deployment Id in the request does not match the expected deployment Id for the given TokenId";

/// Decodes `value` as the SDK would, failing the test with the reason.
#[track_caller]
fn decode<T: DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("the SDK cannot decode {value}: {e}"))
}

/// No `null` anywhere: the SDK accepts one only where a field is nullable,
/// and switchboard leaves such fields out instead.
#[track_caller]
fn assert_no_nulls(value: &Value, at: &str) {
    match value {
        Value::Null => panic!("null at {at}"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_no_nulls(item, &format!("{at}[{i}]"));
            }
        }
        Value::Object(fields) => {
            for (name, field) in fields {
                assert_no_nulls(field, &format!("{at}.{name}"));
            }
        }
        _ => {}
    }
}

// ---- setup --------------------------------------------------------------

/// Publishes a configuration of `body` and answers its id.
async fn published(app: &TestApp, admin: &str, body: Value) -> String {
    let id = app
        .post("/api/v2/webdeployments/configurations", admin, body)
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &format!("/api/v2/webdeployments/configurations/{id}/versions/draft/publish"),
        admin,
        json!({}),
    )
    .await
    .expect(StatusCode::CREATED);
    id
}

fn configuration(integration: Option<&str>, messenger: Value) -> Value {
    json!({
        "name": "App messenger",
        "authenticationSettings": {
            "enabled": integration.is_some(),
            "integrationId": integration,
        },
        "messenger": messenger,
        "languages": ["en-us"],
        "defaultLanguage": "en-us",
    })
}

async fn queue(app: &TestApp, admin: &str) -> String {
    app.post(
        "/api/v2/routing/queues",
        admin,
        json!({ "name": "Support" }),
    )
    .await
    .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An active deployment of version 1 of `configuration`, with `extra`
/// fields (the origins and apps it admits) over the defaults.
async fn deployment(app: &TestApp, admin: &str, configuration: &str, extra: Value) -> String {
    let queue = queue(app, admin).await;
    let mut body = json!({
        "name": "app",
        "configuration": { "id": configuration, "version": "1" },
        "allowedDomains": [SHOP],
        "status": "Active",
        "queueId": queue,
    });
    for (name, value) in extra.as_object().unwrap() {
        body[name] = value.clone();
    }
    app.post("/api/v2/webdeployments/deployments", admin, body)
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn integration(app: &TestApp, admin: &str, idp: &TestIdp, rotation: bool) -> String {
    app.post(
        "/api/v2/integrations/oidc",
        admin,
        json!({
            "name": "App IdP",
            "issuer": idp.issuer,
            "clientId": idp.client_id,
            "clientSecret": idp.client_secret,
            "refreshTokenRotation": rotation,
        }),
    )
    .await
    .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs the code flow with PKCE at `idp` as an app's browser tab does, and
/// answers the SDK's exchange body for its code.
async fn app_login(idp: &TestIdp, deployment: &str, login: &str) -> Value {
    let (verifier, challenge) = pkce_pair();
    let mut url = url::Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &idp.client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile")
        .append_pair("redirect_uri", &idp.redirect_uri)
        .append_pair("state", &Uuid::new_v4().to_string())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let callback = idp.login(url.as_str(), login).await;
    // The SDK's body: no nonce, no iss, no maxAge.
    json!({
        "deploymentId": deployment,
        "oauth": {
            "code": callback.code(),
            "redirectUri": idp.redirect_uri,
            "codeVerifier": verifier.expose_secret(),
        }
    })
}

/// POSTs `body` as the SDK's Ktor client does: JSON, no Origin.
async fn post(app: &TestApp, path: &str, body: &Value) -> Reply {
    app.call(Method::POST, path, None, Some(body.clone())).await
}

// ---- the guest socket, as the SDK opens it --------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(
    app: &TestApp,
    deployment: &str,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = format!(
        "{}/v1?deploymentId={deployment}&application=TransportSDK-2.14.0",
        app.base.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

fn refused(result: Result<Ws, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the upgrade failed otherwise: {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

/// Sends `frame` and answers the first frame of `class` that follows.
async fn request(ws: &mut Ws, frame: Value, class: &str) -> Value {
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    if frame["class"] == class {
                        return frame;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended waiting for {class}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {class} within 10 s"))
}

/// The SDK's `configureSession` (literal of its serialization test).
fn configure(token: &str, deployment: &str) -> Value {
    json!({
        "token": token,
        "deploymentId": deployment,
        "startNew": false,
        "journeyContext": {
            "customer": { "id": token, "idType": "cookie" },
            "customerSession": { "id": "", "type": "web" },
        },
        "tracingId": Uuid::new_v4().to_string(),
        "action": "configureSession",
    })
}

/// A configured guest session on `deployment`: the socket and its token.
async fn guest(app: &TestApp, deployment: &str, origin: Option<&str>) -> (Ws, String) {
    let mut ws = connect(app, deployment, origin).await.unwrap();
    let token = Uuid::new_v4().to_string();
    let answer = request(&mut ws, configure(&token, deployment), "SessionResponse").await;
    let answer: sdk::Frame<sdk::SessionResponse> = decode(&answer);
    assert_eq!(answer.code, 200);
    assert!(answer.body.connected);
    (ws, token)
}
