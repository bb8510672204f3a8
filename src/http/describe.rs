//! The finishing pass over the OpenAPI document the handlers' annotations
//! produce: the routes that are not annotated (the guest history endpoint
//! and the operational endpoints), the error answers every operation of a
//! kind can give (so no annotation forgets one), and operation ids that
//! are unique (code generators name functions after them).
//!
//! The rules follow the layers every request passes: a secured operation
//! can answer 401 and 403; one that takes a JSON body 400 (malformed),
//! 413 (too large), 415 (not JSON) and 422 (invalid); one with a path
//! parameter 404 (and 400 for a malformed one), one with query parameters
//! 400; one that reads the engine 503; the guest token and push endpoints,
//! which are rate limited, 429.

use serde_json::{Map, Value, json};

use crate::limits::Limits;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Paths that never touch the engine, so never answer 503.
const NO_ENGINE: [&str; 3] = ["/healthz", "/metrics", "/openapi.json"];

/// Path prefixes whose operations are rate limited.
const RATE_LIMITED: [&str; 2] = [
    "/api/v2/webdeployments/token/",
    "/api/v2/webmessaging/deployments/",
];

/// Completes the generated document.
pub(super) fn finish(document: &mut Value) {
    add_unannotated(document);
    for (path, item) in paths_mut(document) {
        for method in METHODS {
            if let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) {
                add_errors(&path, operation);
            }
        }
    }
    unique_operation_ids(document);
    if let Some(info) = document.get_mut("info").and_then(Value::as_object_mut) {
        info.insert(
            "description".to_owned(),
            json!(
                "Admin, token and public endpoints of switchboard. Errors answer \
                 {code, message, details?}. A method a path does not take answers 405 \
                 (method_not_allowed), an unknown path 404 (not_found)."
            ),
        );
    }
}

fn paths_mut(document: &mut Value) -> Vec<(String, &mut Map<String, Value>)> {
    document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .map(|paths| {
            paths
                .iter_mut()
                .filter_map(|(path, item)| item.as_object_mut().map(|item| (path.clone(), item)))
                .collect()
        })
        .unwrap_or_default()
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

fn add_errors(path: &str, operation: &mut Map<String, Value>) {
    let secured = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let json_body = operation
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
        .is_some_and(|c| c.contains_key("application/json"));
    let query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| {
            ps.iter()
                .any(|p| p.get("in").and_then(Value::as_str) == Some("query"))
        });
    let mut add = Vec::new();
    if query {
        add.push(("400", "a query parameter is malformed"));
    }
    if secured {
        add.push(("401", "no credential, or one that is not valid"));
        add.push(("403", "the credential lacks the role this needs"));
    }
    if json_body {
        add.push(("400", "the body is not JSON"));
        add.push(("413", "the body is larger than 64 KiB"));
        add.push(("415", "the body is not sent as application/json"));
        add.push(("422", "the body does not satisfy the schema's rules"));
    }
    if path.contains('{') {
        add.push(("404", "no such resource (or one of another organization)"));
        add.push(("400", "a path parameter is malformed"));
    }
    if !NO_ENGINE.contains(&path) {
        add.push(("503", "the engine is unavailable"));
    }
    if RATE_LIMITED.iter().any(|p| path.starts_with(p)) {
        add.push((
            "429",
            "too many requests; retry after the Retry-After seconds",
        ));
    }
    let responses = operation.entry("responses").or_insert_with(|| json!({}));
    if let Some(responses) = responses.as_object_mut() {
        for (status, description) in add {
            responses
                .entry(status)
                .or_insert_with(|| error_response(description));
        }
    }
}

/// Operation ids that appear more than once get their path's resource
/// appended; every operation without an id gets one from its method and
/// path.
fn unique_operation_ids(document: &mut Value) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for (_, item) in paths_mut(document) {
        for method in METHODS {
            if let Some(id) = item
                .get(method)
                .and_then(|o| o.get("operationId"))
                .and_then(Value::as_str)
            {
                *seen.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    for (path, item) in paths_mut(document) {
        for method in METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            let id = operation
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let unique = match id {
                Some(id) if seen.get(&id) == Some(&1) => continue,
                Some(id) => format!("{id}{}", pascal_path(&path)),
                None => format!("{method}{}", pascal_path(&path)),
            };
            operation.insert("operationId".to_owned(), Value::String(unique));
        }
    }
}

/// `/api/v2/members/{id}` → `MembersById`.
fn pascal_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != "api" && *s != "v2")
        .map(|segment| {
            let (prefix, name) = match segment.strip_prefix('{') {
                Some(param) => ("By", param.trim_end_matches('}')),
                None => ("", segment),
            };
            let words: String = name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .map(|w| {
                    let mut chars = w.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect();
            format!("{prefix}{words}")
        })
        .collect()
}

/// The document as a node serves it: the limits a client can run into that
/// an operator sets (and may reload) stated as in force now.
pub(super) fn with_limits(document: &Value, limits: &Limits) -> Value {
    let mut document = document.clone();
    let history_page_size = document
        .pointer_mut(&format!(
            "/paths/{}/get/parameters",
            super::history::HISTORY_PATH
                .replace('~', "~0")
                .replace('/', "~1")
        ))
        .and_then(Value::as_array_mut)
        .and_then(|parameters| parameters.iter_mut().find(|p| p["name"] == "pageSize"))
        .and_then(|parameter| parameter.pointer_mut("/schema/maximum"));
    if let Some(maximum) = history_page_size {
        *maximum = json!(limits.history.page_size);
    }
    document
}

/// The routes outside the annotated routers.
fn add_unannotated(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let text = |description: &str| json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } });
    paths.insert(
        super::history::HISTORY_PATH.to_owned(),
        json!({
            "get": {
                "tags": ["guest"],
                "operationId": "getGuestHistory",
                "summary": "A guest session's transcript, newest first",
                "description": "With the bearer token of the guest protocol's getJwt. A guest sees its session's current conversation; a signed-in visitor every conversation of theirs. Browsers call it from the deployment's origins.",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "pageNumber", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1 } },
                    { "name": "pageSize", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 100 } }
                ],
                "responses": {
                    "200": {
                        "description": "one page of StructuredMessages with their sequences",
                        "content": { "application/json": { "schema": {
                            "type": "object",
                            "required": ["entities", "pageNumber", "pageSize", "total", "pageCount"],
                            "properties": {
                                "entities": { "type": "array", "items": { "type": "object" } },
                                "pageNumber": { "type": "integer" },
                                "pageSize": { "type": "integer" },
                                "total": { "type": "integer" },
                                "pageCount": { "type": "integer" }
                            }
                        } } }
                    },
                    "400": error_response("a paging parameter is malformed"),
                    "401": error_response("no token, or one that is invalid, expired, or whose session is gone"),
                    "403": error_response("the request's origin is not one of the deployment's")
                }
            }
        }),
    );
    paths.insert(
        "/healthz".to_owned(),
        json!({ "get": { "tags": ["operations"], "operationId": "getHealth",
            "summary": "The process is up (liveness)",
            "responses": { "200": text("ok") } } }),
    );
    let readiness = json!({
        "description": "readiness",
        "content": { "application/json": { "schema": {
            "type": "object",
            "required": ["ready", "engine"],
            "properties": { "ready": { "type": "boolean" }, "engine": { "type": "string" }, "reason": { "type": "string" } }
        } } }
    });
    paths.insert(
        "/readyz".to_owned(),
        json!({ "get": { "tags": ["operations"], "operationId": "getReadiness",
            "summary": "The node can serve: its engine answers (readiness)",
            "responses": { "200": readiness, "503": readiness } } }),
    );
    paths.insert(
        "/metrics".to_owned(),
        json!({ "get": { "tags": ["operations"], "operationId": "getMetrics",
            "summary": "Prometheus metrics",
            "responses": { "200": text("the metrics in the Prometheus exposition format") } } }),
    );
    paths.insert(
        "/openapi.json".to_owned(),
        json!({ "get": { "tags": ["operations"], "operationId": "getOpenApi",
            "summary": "This document",
            "responses": { "200": { "description": "the OpenAPI document",
                "content": { "application/json": { "schema": { "type": "object" } } } } } } }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_pascal_case_names() {
        assert_eq!(pascal_path("/api/v2/members/{id}"), "MembersById");
        assert_eq!(
            pascal_path("/webdeployments/v1/deployments/{id}/config.json"),
            "WebdeploymentsV1DeploymentsByIdConfigJson"
        );
    }

    #[test]
    fn duplicate_ids_are_made_unique_and_errors_added() {
        let mut document = json!({
            "info": {},
            "paths": {
                "/api/v2/a": { "get": { "operationId": "list", "security": [{ "bearer": [] }], "responses": {} } },
                "/api/v2/b/{id}": { "put": { "operationId": "list", "responses": {},
                    "requestBody": { "content": { "application/json": {} } } } }
            }
        });
        finish(&mut document);
        let a = &document["paths"]["/api/v2/a"]["get"];
        let b = &document["paths"]["/api/v2/b/{id}"]["put"];
        assert_eq!(a["operationId"], "listA");
        assert_eq!(b["operationId"], "listBById");
        for status in ["401", "403", "503"] {
            assert!(a["responses"].get(status).is_some(), "{status}");
        }
        for status in ["400", "404", "413", "415", "422", "503"] {
            assert!(b["responses"].get(status).is_some(), "{status}");
        }
        assert!(a["responses"].get("415").is_none());
        assert!(
            document["paths"]
                .get(super::super::history::HISTORY_PATH)
                .is_some()
        );
    }
}
