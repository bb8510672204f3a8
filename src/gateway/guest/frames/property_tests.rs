//! A property test of the request parser: over many generated frames (the
//! known actions and fields, each sometimes missing, of the wrong type or
//! over a limit, and text that is hardly JSON), every input parses into a
//! request that keeps the protocol's limits, or is refused with a
//! documented code. The generator is a seeded xorshift, so a failure
//! repeats.

use secrecy::ExposeSecret;
use serde_json::Value;
use uuid::Uuid;

use crate::routing::model::{ContentItem, MessageType};

use super::defaults::{MAX_CUSTOM_DATA_BYTES, MAX_TEXT_CHARS, parse};
use super::{
    GuestMessage, MAX_CLIENT_ID_CHARS, MAX_TOKEN_CHARS, MAX_TRACING_ID_CHARS, MessageKind, Request,
    error,
};

const ACTIONS: [&str; 8] = [
    "configureSession",
    "configureAuthenticatedSession",
    "onMessage",
    "echo",
    "getJwt",
    "getConfiguration",
    "closeSession",
    "dance",
];
const MESSAGE_TYPES: [&str; 5] = ["Text", "Structured", "Event", "Attachment", "Nope"];

/// A field of a generated frame, and how to make a value of its type.
type Field = (&'static str, fn(&mut Gen) -> Value);

/// A small deterministic generator (xorshift), so the property test
/// needs no dependency and fails the same way every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[self.below(choices.len())]
    }

    /// A string: usually short and plain, sometimes empty, long, or
    /// odd (quotes, escapes, non-ASCII).
    fn string(&mut self) -> String {
        match self.below(8) {
            0 => String::new(),
            1 => "x".repeat(self.pick_len(&[
                MAX_TEXT_CHARS,
                MAX_TOKEN_CHARS,
                MAX_CLIENT_ID_CHARS,
                MAX_TRACING_ID_CHARS,
            ])),
            2 => "é\"\\\u{0}\u{1F600}".repeat(self.below(4) + 1),
            _ => format!("s{}", self.next() % 1000),
        }
    }

    /// Around a limit: at it or just over.
    fn pick_len(&mut self, limits: &[usize]) -> usize {
        limits[self.below(limits.len())] + self.below(2)
    }

    /// Any JSON value, mostly small.
    fn value(&mut self, depth: usize) -> Value {
        match self.below(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(self.chance(2)),
            2 => serde_json::json!(self.next() as i64 % 2000 - 1000),
            3 => serde_json::json!(-1.5),
            4 => Value::String(self.string()),
            5 => Value::Array((0..self.below(3)).map(|_| self.value(depth - 1)).collect()),
            _ => {
                let keys = ["type", "text", "code", "id", "contentType", "k"];
                Value::Object(
                    (0..self.below(3))
                        .map(|_| (self.pick(&keys).to_owned(), self.value(depth - 1)))
                        .collect(),
                )
            }
        }
    }

    /// A field's value: the right type most of the time.
    fn field(&mut self, right: impl FnOnce(&mut Self) -> Value) -> Option<Value> {
        match self.below(6) {
            0 => None,
            1 => Some(self.value(2)),
            _ => Some(right(self)),
        }
    }

    fn message(&mut self) -> Value {
        let mut message = serde_json::Map::new();
        let fields: [Field; 6] = [
            ("type", |g| Value::String(g.pick(&MESSAGE_TYPES).to_owned())),
            ("text", |g| Value::String(g.string())),
            ("id", |g| Value::String(g.string())),
            ("metadata", |g| serde_json::json!({ "k": g.string() })),
            ("events", |g| g.events()),
            ("content", |g| match g.below(4) {
                0 => {
                    serde_json::json!([{ "contentType": "Attachment", "attachment": { "id": g.string() } }])
                }
                1 => serde_json::json!([{ "contentType": "QuickReply" }]),
                2 => serde_json::json!([{ "contentType": "ButtonResponse", "buttonResponse":
                    { "text": g.string(), "payload": g.string(), "type": "QuickReply" } }]),
                _ => {
                    serde_json::json!([{ "contentType": "Card", "card": { "title": g.string() } }])
                }
            }),
        ];
        for (key, right) in fields {
            if let Some(value) = self.field(right) {
                message.insert(key.to_owned(), value);
            }
        }
        Value::Object(message)
    }

    fn events(&mut self) -> Value {
        let types = ["Typing", "Presence", "Other"];
        let presences = ["Join", "Disconnect", "Clear", "SignIn", "Leave", "Nope"];
        let mut event = serde_json::Map::new();
        if let Some(t) = self.field(|g| Value::String(g.pick(&types).to_owned())) {
            event.insert("eventType".to_owned(), t);
        }
        if let Some(p) = self.field(|g| serde_json::json!({ "type": g.pick(&presences) })) {
            event.insert("presence".to_owned(), p);
        }
        Value::Array(if self.chance(6) {
            Vec::new()
        } else {
            vec![Value::Object(event)]
        })
    }

    /// A request frame: the known actions and fields, each sometimes
    /// missing, of the wrong type, or over a limit.
    fn frame(&mut self) -> Value {
        let fields: [Field; 10] = [
            ("action", |g| Value::String(g.pick(&ACTIONS).to_owned())),
            ("token", |g| Value::String(g.string())),
            ("tracingId", |g| Value::String(g.string())),
            ("deploymentId", |g| Value::String(g.string())),
            ("startNew", |g| Value::Bool(g.chance(2))),
            ("lastSequence", |g| serde_json::json!(g.next() % 100)),
            ("conversationId", |g| {
                let id = if g.chance(2) {
                    Uuid::new_v4().to_string()
                } else {
                    g.string()
                };
                Value::String(id)
            }),
            ("data", |g| serde_json::json!({ "code": g.string() })),
            ("message", Self::message),
            ("closeAllConnections", |g| Value::Bool(g.chance(2))),
        ];
        let mut frame = serde_json::Map::new();
        for (key, right) in fields {
            // The action is there most of the time, so that most
            // frames get past it.
            let value = if key == "action" && !self.chance(8) {
                Some(right(self))
            } else {
                self.field(right)
            };
            if let Some(value) = value {
                frame.insert(key.to_owned(), value);
            }
        }
        if self.chance(5) {
            let attributes = match self.below(3) {
                0 => self.value(2),
                // Around the limit on custom attributes.
                _ => Value::Object(
                    (0..self.below(120))
                        .map(|i| (format!("key{i}"), Value::String("v".repeat(16))))
                        .collect(),
                ),
            };
            let channel = serde_json::json!({ "metadata": { "customAttributes": attributes } });
            if let Some(Value::Object(message)) = frame.get_mut("message") {
                message.insert("channel".to_owned(), channel);
            }
        }
        Value::Object(frame)
    }

    /// Text that is rarely a request: truncated or mangled frames and
    /// other JSON.
    fn text(&mut self) -> String {
        match self.below(4) {
            0 => self.value(3).to_string(),
            1 => {
                let text = self.frame().to_string();
                let cut = self.below(text.len() + 1);
                text.chars().take(cut).collect()
            }
            2 => {
                let tokens = [
                    "{",
                    "}",
                    "[",
                    "]",
                    ",",
                    ":",
                    "\"action\"",
                    "\"x\"",
                    "1",
                    "null",
                    " ",
                ];
                (0..self.below(12)).map(|_| self.pick(&tokens)).collect()
            }
            _ => self.frame().to_string(),
        }
    }
}

/// The codes the parser may answer with (docs/guest-protocol.md). 4000
/// (attachments unavailable) is no longer one: attachments are parsed, and
/// refused by the socket when the node cannot keep them.
const PARSE_CODES: [u16; 4] = [400, 4011, 4013, 4020];

/// Every input either parses into a request of the action it named,
/// with a token where one is needed and every limit kept, or is refused
/// with a documented code, echoing the request's `tracingId` when it
/// had a usable one, in an error frame that is itself valid JSON.
/// Answers the code of a refusal.
fn parses_or_is_refused_as_documented(text: &str) -> Result<(), u16> {
    let value = serde_json::from_str::<Value>(text).ok();
    let object = value.as_ref().and_then(Value::as_object);
    let tracing_id = object
        .and_then(|o| o.get("tracingId"))
        .and_then(Value::as_str)
        .filter(|t| t.chars().count() <= MAX_TRACING_ID_CHARS);
    let p = match parse(text) {
        Ok(p) => p,
        Err(r) => {
            assert!(
                PARSE_CODES.contains(&r.error.code),
                "{text} -> {:?}",
                r.error
            );
            assert!(!r.error.message.is_empty(), "{text}");
            match object {
                Some(_) => assert_eq!(r.tracing_id.as_deref(), tracing_id, "{text}"),
                None => {
                    assert_eq!(r.error.code, 400, "{text}");
                    assert_eq!(r.tracing_id, None, "{text}");
                }
            }
            let frame = error(&r.error, r.tracing_id.as_deref());
            let frame: Value = serde_json::from_str(&frame)
                .unwrap_or_else(|e| panic!("{text}: the error frame is not JSON: {e}"));
            assert_eq!(frame["code"], r.error.code, "{text}");
            return Err(r.error.code);
        }
    };
    let object = object.unwrap_or_else(|| panic!("parsed a non-object: {text}"));
    assert_eq!(
        object.get("action").and_then(Value::as_str),
        Some(p.request.action()),
        "{text}"
    );
    assert_eq!(p.tracing_id.as_deref(), tracing_id, "{text}");
    let needs_token = !matches!(p.request, Request::GetConfiguration { .. });
    assert!(!needs_token || p.token.is_some(), "{text}");
    if let Some(token) = &p.token {
        let token = token.expose_secret();
        assert!(!token.is_empty(), "{text}");
        assert!(token.chars().count() <= MAX_TOKEN_CHARS, "{text}");
    }
    match &p.request {
        Request::OnMessage(m) => within_limits(m, text),
        Request::Echo {
            text: Some(echo), ..
        } => {
            assert!(echo.chars().count() <= MAX_TEXT_CHARS, "{text}");
        }
        Request::ConfigureAuthenticatedSession { code, .. } => {
            assert!(!code.expose_secret().is_empty(), "{text}");
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn arbitrary_input_parses_or_is_refused_with_a_documented_code() {
    // Inputs that once needed care.
    let samples = [
        "",
        " ",
        "\"x\"",
        "1",
        "{\"action\":null}",
        "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":[]}",
        "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":{\"type\":\"Event\",\"events\":[{}]}}",
        "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":{\"type\":\"Event\",\"events\":[{\"eventType\":\"Presence\",\"presence\":{\"type\":7}}]}}",
        "{\"action\":\"configureSession\",\"token\":\"t\",\"deploymentId\":\"d\",\"lastSequence\":-1}",
        "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":{\"type\":\"Text\",\"text\":\"x\",\"channel\":{\"metadata\":{\"customAttributes\":[1]}}}}",
    ];
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    for sample in samples {
        let code = parses_or_is_refused_as_documented(sample).expect_err(sample);
        *refused.entry(code).or_default() += 1;
    }
    // The limits, whether or not the generator happens to reach them.
    let long = serde_json::json!({"action":"onMessage","token":"t",
        "message":{"type":"Text","text":"x".repeat(MAX_TEXT_CHARS + 1)}});
    let large = serde_json::json!({"action":"onMessage","token":"t","customAttributes":
        {"k":"v".repeat(MAX_CUSTOM_DATA_BYTES)},"message":{"type":"Text","text":"x"}});
    for (sample, code) in [(long, 4011), (large, 4013)] {
        assert_eq!(
            parses_or_is_refused_as_documented(&sample.to_string()),
            Err(code)
        );
        *refused.entry(code).or_default() += 1;
    }
    let mut generator = Gen(0x2545_f491_4f6c_dd1d);
    let mut parsed = 0;
    for round in 0..20_000 {
        let text = if round % 3 == 0 {
            generator.text()
        } else {
            generator.frame().to_string()
        };
        match parses_or_is_refused_as_documented(&text) {
            Ok(()) => parsed += 1,
            Err(code) => *refused.entry(code).or_default() += 1,
        }
    }
    // The generator reaches the outcomes, not only the easy ones.
    assert!(parsed > 1000, "{parsed} parsed");

    assert_eq!(
        refused.keys().copied().collect::<Vec<_>>(),
        PARSE_CODES,
        "{refused:?}"
    );
}

fn within_limits(m: &GuestMessage, text: &str) {
    match &m.kind {
        MessageKind::Message {
            message_type,
            text: body,
            content,
        } => {
            // A file may travel alone, as Text without text.
            let files = content
                .iter()
                .any(|c| matches!(c, ContentItem::Attachment { .. }));
            if *message_type == MessageType::Text {
                assert!(body.is_some() || files, "{text}");
            }
            assert!(body.is_some() || !content.is_empty(), "{text}");
            assert!(
                body.as_ref()
                    .is_none_or(|b| !b.is_empty() && b.chars().count() <= MAX_TEXT_CHARS),
                "{text}"
            );
            // Only what a visitor may send, each item as Genesys clients
            // decode it.
            assert!(
                content.iter().all(|c| matches!(
                    c,
                    ContentItem::ButtonResponse { .. }
                        | ContentItem::QuickReply { .. }
                        | ContentItem::Attachment { .. }
                )),
                "{text}"
            );
        }
        MessageKind::Event(_) => {}
    }
    assert!(
        m.metadata.custom_attributes.data_bytes() <= MAX_CUSTOM_DATA_BYTES,
        "{text}"
    );
    if let Some(id) = &m.client_id {
        assert!(
            !id.is_empty() && id.chars().count() <= MAX_CLIENT_ID_CHARS,
            "{text}"
        );
    }
}
