//! Push delivery on two nodes sharing a Redis: a visitor whose app is in
//! the background (its device registered, its socket closed) gets one
//! notification per agent message, through local stand-ins for FCM and
//! APNs that check each request as the services document it (a service
//! account assertion signed RS256 traded for an access token; an ES256
//! provider token over HTTP/2), signatures verified with the public keys.
//! A visitor who is here gets none; a service's 503 is retried; a device
//! the service no longer knows is removed.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Form;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use crate::multi_node::cluster_env;
use crate::support::guest::new_token;
use crate::support::node::Node;
use crate::support::redis::RedisServer;
use crate::support::site::SiteSpec;

const PROJECT: &str = "switchboard-push-test";
const CLIENT_EMAIL: &str = "push@switchboard-push-test.iam.gserviceaccount.com";
const KEY_ID: &str = "KEY0123456";
const TEAM_ID: &str = "TEAM012345";
const TOPIC: &str = "com.example.chat";
const APNS_DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn openssl(args: &[&str]) {
    let status = Command::new("openssl").args(args).status().unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// An RSA key pair (the service account's) and a P-256 one (the `.p8`),
/// as PEM files in `dir`.
fn keys(dir: &Path) -> (String, String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path("fcm.pem"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &path("fcm.pem"),
        "-pubout",
        "-out",
        &path("fcm.pub"),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &path("apns.p8"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &path("apns.p8"),
        "-pubout",
        "-out",
        &path("apns.pub"),
    ]);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    (
        read("fcm.pem"),
        read("fcm.pub"),
        path("apns.p8"),
        read("apns.pub"),
    )
}

/// What a stand-in answers to the next sends, then 200 for the rest.
type Script = Arc<Mutex<VecDeque<(u16, Value)>>>;

#[derive(Clone)]
struct Services {
    base: String,
    fcm_public: Arc<DecodingKey>,
    apns_public: Arc<DecodingKey>,
    /// Access tokens the token endpoint issued.
    issued: Arc<Mutex<Vec<String>>>,
    /// Every send request that passed the checks: (service, body).
    sends: Arc<Mutex<Vec<(String, Value)>>>,
    /// Requests refused by the checks, with why.
    refused: Arc<Mutex<Vec<String>>>,
    fcm_script: Script,
    apns_script: Script,
}

impl Services {
    fn refuse(&self, why: String) -> Response {
        self.refused.lock().unwrap().push(why.clone());
        (StatusCode::UNAUTHORIZED, why).into_response()
    }

    fn answer(&self, script: &Script, service: &str, body: Value) -> Response {
        let (status, answer) = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, json!({ "name": "ok" })));
        self.sends
            .lock()
            .unwrap()
            .push((format!("{service} {status}"), body));
        let mut response =
            (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response();
        if status == 503 {
            response
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
        }
        response
    }

    fn delivered(&self, service: &str) -> Vec<Value> {
        let wanted = format!("{service} 200");
        self.sends
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == wanted)
            .map(|(_, body)| body.clone())
            .collect()
    }

    async fn until_delivered(&self, service: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let delivered = self.delivered(service);
            if delivered.len() >= count {
                return delivered;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service}: {} of {count} delivered; sends {:?}, refused {:?}",
                delivered.len(),
                self.sends.lock().unwrap(),
                self.refused.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn token(
    State(services): State<Services>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return services.refuse(format!("grant_type {:?}", form.get("grant_type")));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("{}/token", services.base)]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let claims = match jsonwebtoken::decode::<Value>(&assertion, &services.fcm_public, &validation)
    {
        Ok(data) => data.claims,
        Err(e) => return services.refuse(format!("assertion: {e}")),
    };
    if claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
        return services.refuse(format!("scope {}", claims["scope"]));
    }
    let access = format!("ya29.{}", uuid::Uuid::new_v4().simple());
    services.issued.lock().unwrap().push(access.clone());
    axum::Json(json!({ "access_token": access, "expires_in": 3599, "token_type": "Bearer" }))
        .into_response()
}

async fn fcm_send(
    State(services): State<Services>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    if project != format!("{PROJECT}/messages:send") {
        return services.refuse(format!("project path {project}"));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if !services.issued.lock().unwrap().contains(&bearer) {
        return services.refuse("an access token the token endpoint did not issue".to_owned());
    }
    services.answer(&services.fcm_script, "fcm", body.0)
}

async fn apns_send(
    State(services): State<Services>,
    UrlPath(device): UrlPath<String>,
    request_headers: HeaderMap,
    version: axum::http::Version,
    body: axum::Json<Value>,
) -> Response {
    if version != axum::http::Version::HTTP_2 {
        return services.refuse(format!("APNs takes HTTP/2, not {version:?}"));
    }
    let header = |name: &str| {
        request_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let Some(token) = header("authorization")
        .strip_prefix("bearer ")
        .map(str::to_owned)
    else {
        return services.refuse("no provider token".to_owned());
    };
    let jwt_header = jsonwebtoken::decode_header(&token).ok();
    if jwt_header.as_ref().and_then(|h| h.kid.as_deref()) != Some(KEY_ID) {
        return services.refuse("provider token kid".to_owned());
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[TEAM_ID]);
    validation.set_required_spec_claims(&["iss", "iat"]);
    validation.validate_exp = false;
    if let Err(e) = jsonwebtoken::decode::<Value>(&token, &services.apns_public, &validation) {
        return services.refuse(format!("provider token: {e}"));
    }
    if header("apns-topic") != TOPIC || header("apns-push-type") != "alert" {
        return services.refuse(format!(
            "topic {} push type {}",
            header("apns-topic"),
            header("apns-push-type")
        ));
    }
    let mut body = body.0;
    body["device"] = json!(device);
    services.answer(&services.apns_script, "apns", body)
}

async fn start_services(fcm_public: &str, apns_public: &str) -> Services {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let services = Services {
        base,
        fcm_public: Arc::new(DecodingKey::from_rsa_pem(fcm_public.as_bytes()).unwrap()),
        apns_public: Arc::new(DecodingKey::from_ec_pem(apns_public.as_bytes()).unwrap()),
        issued: Arc::default(),
        sends: Arc::default(),
        refused: Arc::default(),
        fcm_script: Arc::default(),
        apns_script: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/token", post(token))
        .route("/v1/projects/{*rest}", post(fcm_send))
        .route("/3/device/{device}", post(apns_send))
        .with_state(services.clone());
    // axum::serve takes HTTP/1.1 and HTTP/2 with prior knowledge, as the
    // node speaks to APNs.
    tokio::spawn(async move { axum::serve(listener, app).await });
    services
}

/// Guest sockets closed on `node`, from its metrics: a closed socket has
/// given up its presence once it is counted.
async fn guest_sockets_closed(node: &Node) -> u64 {
    let text = reqwest::get(format!("{}/metrics", node.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(r#"switchboard_websockets_closed_total{side="guest""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn leave(node: &Node, visitor: crate::support::guest::Guest) {
    let before = guest_sockets_closed(node).await;
    drop(visitor);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while guest_sockets_closed(node).await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the guest socket never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn register(
    node: &Node,
    deployment: &str,
    session_token: &str,
    device: &str,
    provider: &str,
) -> u16 {
    reqwest::Client::new()
        .post(format!(
            "{}/api/v2/webmessaging/deployments/{deployment}/pushdevices/{}",
            node.base,
            session_token.to_lowercase()
        ))
        .json(&json!({
            "deviceToken": device,
            "language": "en-us",
            "deviceType": if provider == "APNS" { "ios" } else { "android" },
            "notificationProvider": provider,
        }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answer_reaches_an_app_in_the_background_once() {
    let dir = tempfile::tempdir().unwrap();
    let (fcm_key, fcm_public, apns_key_file, apns_public) = keys(dir.path());
    let services = start_services(&fcm_public, &apns_public).await;
    let account = dir.path().join("service-account.json");
    std::fs::write(
        &account,
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "k1",
            "private_key": fcm_key,
            "client_email": CLIENT_EMAIL,
            "token_uri": format!("{}/token", services.base),
        })
        .to_string(),
    )
    .unwrap();

    let redis = RedisServer::start();
    let mut env = cluster_env(&redis);
    env.extend([
        (
            "SWITCHBOARD_PUSH_FCM_CREDENTIALS_FILE".to_owned(),
            account.display().to_string(),
        ),
        (
            "SWITCHBOARD_PUSH_FCM_ENDPOINT".to_owned(),
            services.base.clone(),
        ),
        ("SWITCHBOARD_PUSH_APNS_KEY_FILE".to_owned(), apns_key_file),
        ("SWITCHBOARD_PUSH_APNS_KEY_ID".to_owned(), KEY_ID.to_owned()),
        (
            "SWITCHBOARD_PUSH_APNS_TEAM_ID".to_owned(),
            TEAM_ID.to_owned(),
        ),
        ("SWITCHBOARD_PUSH_APNS_TOPIC".to_owned(), TOPIC.to_owned()),
        (
            "SWITCHBOARD_PUSH_APNS_ENDPOINT".to_owned(),
            services.base.clone(),
        ),
    ]);
    // Two nodes, both able to send: the outbox lease lets one.
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let api_a = a.api();
    let site = api_a
        .site_as(
            a.bootstrap(),
            &SiteSpec::new().conversations(json!({
                "enabled": true,
                "notifications": {
                    "enabled": true,
                    "notificationContentType": "IncludeMessagesContent",
                },
            })),
        )
        .await;
    let (_, agent_token) = api_a.client(a.bootstrap(), "Grace", &["agent"]).await;
    let (mut agent, _) = b.api().agent(&agent_token).await;
    agent.available().await;

    // An Android visitor on node A, the agent on node B.
    let android = new_token();
    let mut visitor = api_a.configured_guest(&site.deployment, &android).await;
    assert_eq!(
        register(&a, &site.deployment, &android, "fcm-device-1", "FCM").await,
        204
    );
    visitor.deliver("hello", "m1").await;
    let conversation = agent.accept_first_offer().await;
    // Seen on the socket: no notification, now or after the visitor leaves.
    agent.say(&conversation, "hi, how can I help?").await;
    visitor.until_text("hi, how can I help?").await;
    leave(&a, visitor).await;

    // Away: FCM is down for a moment (503, retry after a second), then
    // takes the notification.
    services.fcm_script.lock().unwrap().push_back((
        503,
        json!({ "error": { "code": 503, "status": "UNAVAILABLE" } }),
    ));
    agent.say(&conversation, "are you still there?").await;
    let delivered = services.until_delivered("fcm", 1).await;
    let message = &delivered[0]["message"];
    assert_eq!(message["token"], "fcm-device-1");
    assert_eq!(message["notification"]["body"], "are you still there?");
    assert_eq!(message["data"]["conversationId"], conversation);

    // An iPhone visitor: the same through APNs.
    let iphone = new_token();
    let mut visitor = api_a.configured_guest(&site.deployment, &iphone).await;
    assert_eq!(
        register(&a, &site.deployment, &iphone, APNS_DEVICE, "APNS").await,
        204
    );
    visitor.deliver("hi from my phone", "m1").await;
    let offer = agent
        .find("the second offer", |f| {
            f["type"] == "offer" && f["conversation"]["id"] != conversation.as_str()
        })
        .await;
    let second = offer["conversation"]["id"].as_str().unwrap().to_owned();
    agent
        .ok(json!({ "type": "accept", "conversationId": second }))
        .await;
    leave(&a, visitor).await;
    agent.say(&second, "we'll call you back").await;
    let delivered = services.until_delivered("apns", 1).await;
    assert_eq!(delivered[0]["device"], APNS_DEVICE);
    assert_eq!(delivered[0]["aps"]["alert"]["body"], "we'll call you back");

    // The app was uninstalled: APNs answers 410, and the registration goes.
    services
        .apns_script
        .lock()
        .unwrap()
        .push_back((410, json!({ "reason": "Unregistered" })));
    agent.say(&second, "one more thing").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Registering again succeeds once the old registration is gone.
        let status = register(&a, &site.deployment, &iphone, APNS_DEVICE, "APNS").await;
        if status == 204 {
            break;
        }
        assert_eq!(status, 409, "a second registration while the first stands");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unregistered device was never removed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Exactly what was due, once each, signed as the services require:
    // nothing for the message the visitor saw, one FCM retry after the 503.
    let sends: Vec<String> = services
        .sends
        .lock()
        .unwrap()
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(
        sends,
        ["fcm 503", "fcm 200", "apns 200", "apns 410"],
        "{sends:?}"
    );
    assert!(
        services.refused.lock().unwrap().is_empty(),
        "{:?}",
        services.refused.lock().unwrap()
    );
    drop(agent);
    a.terminate();
    b.terminate();
}
