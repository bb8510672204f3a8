//! A token sent in the wrong JSON shape: serde's refusal text quotes the
//! value it refused, and refusals are answered and logged. Neither the
//! answer nor any log line (at trace level) may carry it.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::node::Node;

const TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3cm9uZy1zaGFwZS1zZWNyZXQifQ.c2lnbmF0dXJlLXNlY3JldA";
/// Parts of [`TOKEN`] that must not appear anywhere.
const TELLTALES: [&str; 2] = [
    "wrong-shape-secret",
    "eyJzdWIiOiJ3cm9uZy1zaGFwZS1zZWNyZXQifQ",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_the_wrong_shape_reach_no_answer_and_no_log() {
    let data = tempfile::tempdir().unwrap();
    let env = HashMap::from([
        (
            "SWITCHBOARD_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        (
            "RUST_LOG".to_owned(),
            "trace,h2=info,hyper=info,reqwest=info".to_owned(),
        ),
        (
            "SWITCHBOARD_BOOTSTRAP_TOKEN".to_owned(),
            format!("sbb_test_{}", uuid::Uuid::new_v4().simple()),
        ),
    ]);
    let node = Node::start(&env).ready().await;
    let api = node.api();
    let bootstrap = node.bootstrap().to_owned();
    let exchange = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange";
    let deployment = uuid::Uuid::new_v4().to_string();

    let wrong_shapes = [
        (
            exchange,
            json!({ "deploymentId": deployment, "oauth": TOKEN }),
        ),
        (
            exchange,
            json!({ "deploymentId": deployment, "oauth": { "idToken": [TOKEN] } }),
        ),
        (
            exchange,
            json!({ "deploymentId": deployment, "oauth": { "idToken": { "t": TOKEN } } }),
        ),
        (
            exchange,
            json!({ "deploymentId": deployment, "oauth": { "maxAge": TOKEN } }),
        ),
        (exchange, json!({ "deploymentId": [TOKEN], "oauth": {} })),
        (
            exchange,
            json!({ "deploymentId": { TOKEN: 1 }, "oauth": {} }),
        ),
        (
            "/api/v2/webdeployments/token/refresh",
            json!({ "deploymentId": deployment, "refreshToken": { "value": TOKEN } }),
        ),
        (
            "/api/v2/webdeployments/token/oauth/complete",
            json!({ "deploymentId": deployment, "code": 1, "state": [TOKEN] }),
        ),
    ];
    for (path, body) in wrong_shapes {
        let reply = api.call(Method::POST, path, None, Some(body.clone())).await;
        assert!(
            reply.status.is_client_error(),
            "{path} {body}: {}",
            reply.status
        );
        for telltale in TELLTALES {
            assert!(
                !reply.text.contains(telltale),
                "{path} {body}: {}",
                reply.text
            );
        }
    }
    // An admin body too: a client secret in the wrong shape.
    let reply = api
        .post(
            "/api/v2/integrations/oidc",
            &bootstrap,
            json!({ "name": "IdP", "issuer": "https://idp.example.com", "clientId": "web", "clientSecret": [TOKEN] }),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply.text.contains("clientSecret"),
        "the field is named: {}",
        reply.text
    );
    for telltale in TELLTALES {
        assert!(!reply.text.contains(telltale), "{}", reply.text);
    }
    // Not JSON at all, with the token after the error.
    let reply = api
        .http
        .post(api.url(exchange))
        .header("content-type", "application/json")
        .body(format!("{{\"deploymentId\": x \"{TOKEN}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    let text = reply.text().await.unwrap();
    for telltale in TELLTALES {
        assert!(!text.contains(telltale), "{text}");
    }

    let lines = node.terminate();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("guest token request refused")),
        "the refusals were logged: {lines:?}"
    );
    for line in &lines {
        for telltale in TELLTALES {
            assert!(
                !line.contains(telltale),
                "the token reached a log line: {line}"
            );
        }
    }
}
