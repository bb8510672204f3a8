//! docs/asyncapi.yaml checked against the code: every action the guest
//! gateway parses, every class it sends, and every request and frame type
//! of the agent protocol must be named there. The names are read from the
//! sources themselves (the parser's match arms, the classes passed to the
//! senders, the variants of the serde enums), so a frame added to the code
//! and not to the document fails here.

use std::collections::BTreeSet;

const DOCUMENT: &str = include_str!("../../docs/asyncapi.yaml");

const GUEST_PARSER: &str = include_str!("guest/frames/request.rs");
const GUEST_SENDERS: [&str; 7] = [
    include_str!("guest/socket/mod.rs"),
    include_str!("guest/socket/attachments.rs"),
    include_str!("guest/socket/binding.rs"),
    include_str!("guest/socket/delivery.rs"),
    include_str!("guest/socket/requests.rs"),
    include_str!("guest/frames/reply.rs"),
    include_str!("guest/frames/mod.rs"),
];
const AGENT_PROTOCOL: &str = include_str!("agent/protocol.rs");

/// The string literals that open a match arm (`"echo" => {`).
fn match_arms(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line.strip_prefix('"')?;
            let (name, after) = rest.split_once('"')?;
            after
                .trim_start()
                .starts_with("=>")
                .then(|| name.to_owned())
        })
        .collect()
}

/// Guest classes: a capitalized literal that ends like a class and is
/// passed to a sender, or spelled in an error answer.
fn guest_classes(source: &str) -> BTreeSet<String> {
    let mut classes = BTreeSet::new();
    for piece in source.split('"').skip(1).step_by(2) {
        let is_class = piece.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && piece.chars().all(|c| c.is_ascii_alphanumeric())
            && (piece.ends_with("Response")
                || piece.ends_with("Event")
                || piece.ends_with("Message"));
        if is_class {
            classes.insert(piece.to_owned());
        }
    }
    classes
}

/// The variants of `pub enum <name>` in camelCase, as serde tags them.
fn variants(source: &str, name: &str) -> BTreeSet<String> {
    let start = format!("pub enum {name} {{");
    let body = source
        .split_once(&start)
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .unwrap_or_default();
    body.lines()
        .filter_map(|line| {
            let variant = line.strip_prefix("    ")?;
            let first = variant.chars().next()?;
            if !first.is_ascii_uppercase() {
                return None;
            }
            let ident: String = variant
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let mut chars = ident.chars();
            chars
                .next()
                .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        })
        .collect()
}

/// A name the document spells as a message name or a `const`.
fn documented(name: &str) -> bool {
    DOCUMENT.contains(&format!("name: {name}\n")) || DOCUMENT.contains(&format!("const: {name} }}"))
}

fn assert_documented(what: &str, names: &BTreeSet<String>, at_least: usize) {
    assert!(
        names.len() >= at_least,
        "the scan of the {what} found too few names: {names:?}"
    );
    let missing: Vec<&String> = names.iter().filter(|n| !documented(n)).collect();
    assert!(
        missing.is_empty(),
        "{what} missing from docs/asyncapi.yaml: {missing:?}"
    );
}

#[test]
fn every_guest_action_is_documented() {
    let actions = match_arms(GUEST_PARSER);
    assert!(actions.contains("onMessage"), "{actions:?}");
    assert_documented("guest actions", &actions, 7);
}

#[test]
fn every_guest_class_is_documented() {
    let mut classes = BTreeSet::new();
    for source in GUEST_SENDERS {
        classes.extend(guest_classes(source));
    }
    // Error answers are the `string` class.
    classes.insert("string".to_owned());
    assert!(classes.contains("SessionResponse"), "{classes:?}");
    assert_documented("guest classes", &classes, 9);
}

#[test]
fn every_agent_frame_is_documented() {
    let requests = variants(AGENT_PROTOCOL, "Request");
    assert!(requests.contains("setPresence"), "{requests:?}");
    assert_documented("agent requests", &requests, 10);
    let frames = variants(AGENT_PROTOCOL, "ServerFrame");
    assert!(frames.contains("offerRevoked"), "{frames:?}");
    assert_documented("agent server frames", &frames, 7);
}

#[test]
fn an_undocumented_name_is_caught() {
    assert!(!documented("noSuchFrame"));
    assert!(documented("configureSession"));
}
