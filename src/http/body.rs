//! JSON bodies parsed without echoing them. serde's messages quote the
//! value they refused (`invalid type: string "eyJ…", expected a map`), and
//! a refusal is both answered and logged: a token sent in the wrong shape
//! would land in a log line. A refusal here names the field (by its path)
//! and what was expected, never the value.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// What stands in for a value a message would have quoted.
const HIDDEN: &str = "(value not shown)";
/// Map keys longer than this, or with other characters than letters,
/// digits, `_` and `-`, are not field names: shown as `?`.
const MAX_SHOWN_KEY: usize = 40;

/// Why a body did not parse, in words that quote none of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// Not JSON at all (rather than JSON of the wrong shape).
    pub malformed: bool,
    /// A required field is missing.
    pub missing_field: bool,
    pub message: String,
}

/// Parses `body` as JSON into `T`.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| describe(e.path(), e.inner()))?;
    deserializer.end().map_err(|e| describe_syntax(&e))?;
    Ok(value)
}

fn describe(path: &serde_path_to_error::Path, error: &serde_json::Error) -> BodyError {
    if !error.is_data() {
        return describe_syntax(error);
    }
    let text = error.to_string();
    let message = text
        .strip_suffix(&format!(
            " at line {} column {}",
            error.line(),
            error.column()
        ))
        .unwrap_or(&text);
    let message = redact(message);
    let shown = shown_path(path);
    BodyError {
        malformed: false,
        missing_field: message.starts_with("missing field"),
        message: if shown.is_empty() {
            message
        } else {
            format!("{shown}: {message}")
        },
    }
}

/// A syntax error's message: serde_json's never quote the input (they say
/// what was expected where), so they are kept, with the position.
fn describe_syntax(error: &serde_json::Error) -> BodyError {
    BodyError {
        malformed: true,
        missing_field: false,
        message: format!("the body is not JSON: {}", redact(&error.to_string())),
    }
}

/// `oauth.idToken`, `allowedDomains[2]`: struct fields and indexes; map
/// keys that do not look like field names are `?`.
fn shown_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_name(&mut out, key),
            Segment::Enum { variant } => push_name(&mut out, variant),
            Segment::Unknown => push_name(&mut out, "?"),
        }
    }
    out
}

fn push_name(out: &mut String, name: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    let plain = !name.is_empty()
        && name.len() <= MAX_SHOWN_KEY
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    out.push_str(if plain { name } else { "?" });
}

/// `message` with every double-quoted run (serde and our own parsers quote
/// values with Rust's `{:?}`) hidden, and before `, expected` also every
/// back-quoted run of the messages that quote a refused value that way
/// (`unknown variant`, `unknown field`, `invalid type: integer`). What
/// follows `, expected` names our own types and fields: kept.
pub fn redact(message: &str) -> String {
    let (head, tail) = match message.find(", expected ") {
        Some(at) => message.split_at(at),
        None => (message, ""),
    };
    let backticks = [
        "invalid type",
        "invalid value",
        "unknown variant",
        "unknown field",
    ]
    .iter()
    .any(|p| head.starts_with(p));
    let mut out = hide_quoted(head, backticks);
    out.push_str(&hide_quoted(tail, false));
    out
}

fn hide_quoted(text: &str, backticks: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // To the closing quote; `\"` and `\\` are escapes inside.
                while let Some(inner) = chars.next() {
                    match inner {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str(HIDDEN);
            }
            '`' if backticks => {
                for inner in chars.by_ref() {
                    if inner == '`' {
                        break;
                    }
                }
                out.push_str(HIDDEN);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[expect(dead_code, reason = "only parsed")]
    struct Body {
        deployment_id: String,
        oauth: Oauth,
        #[serde(default)]
        extra: HashMap<String, u32>,
        #[serde(default)]
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[expect(dead_code, reason = "only parsed")]
    struct Oauth {
        id_token: Option<String>,
        max_age: Option<u64>,
    }

    #[derive(Debug, Deserialize)]
    enum Kind {
        A,
    }

    const SECRET: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl";

    fn refused(body: &str) -> BodyError {
        parse::<Body>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn refused_values_are_never_quoted() {
        let cases = [
            format!(r#"{{"deploymentId":"d","oauth":"{SECRET}"}}"#),
            format!(r#"{{"deploymentId":"d","oauth":{{"idToken":["{SECRET}"]}}}}"#),
            format!(r#"{{"deploymentId":"d","oauth":{{"maxAge":"{SECRET}"}}}}"#),
            format!(r#"{{"deploymentId":"d","oauth":{{}},"kind":"{SECRET}"}}"#),
            format!(r#"{{"deploymentId":"d","oauth":{{}},"extra":{{"{SECRET}":"x"}}}}"#),
            format!(r#"{{"deploymentId":"d","oauth":{{}},"extra":{{"k":"{SECRET}\"\\"}}}}"#),
            format!(r#"{{"deploymentId":{{"{SECRET}":1}},"oauth":{{}}}}"#),
            format!(r#"{{"deploymentId":"d","oauth":{{}}}} "{SECRET}""#),
            format!(r#"["{SECRET}"]"#),
            format!(r#""{SECRET}""#),
        ];
        for body in cases {
            let error = refused(&body);
            assert!(!error.message.contains("c2VjcmV0"), "{body}: {error:?}");
            assert!(!error.message.contains("eyJ"), "{body}: {error:?}");
        }
    }

    #[test]
    fn refusals_name_the_field_and_what_was_expected() {
        let error = refused(&format!(r#"{{"deploymentId":"d","oauth":"{SECRET}"}}"#));
        assert!(!error.malformed);
        assert_eq!(
            error.message,
            "oauth: invalid type: string (value not shown), expected struct Oauth"
        );
        let error = refused(r#"{"deploymentId":"d","oauth":{"maxAge":-1}}"#);
        assert_eq!(
            error.message,
            "oauth.maxAge: invalid value: integer (value not shown), expected u64"
        );
        let error = refused(r#"{"deploymentId":"d","oauth":{},"kind":"B"}"#);
        assert_eq!(
            error.message,
            "kind: unknown variant (value not shown), expected `A`"
        );
        let error = refused(r#"{"oauth":{}}"#);
        assert!(error.missing_field);
        assert_eq!(error.message, "missing field `deploymentId`");
        let error = refused(r#"{"deploymentId":"d""#);
        assert!(error.malformed, "{error:?}");
    }
}
