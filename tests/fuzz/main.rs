//! Fuzz harness for the parsers that take input from anyone, on the stable
//! toolchain: the guest and agent WebSocket frame parsers and the token
//! paths (presented ID tokens against hostile key sets, session JWTs,
//! history tokens, refresh tokens and bearer credentials).
//!
//! Every run first replays the committed corpus (`tests/fuzz-corpus/<target>/`,
//! one input per file), then, for `FUZZ_SECONDS` (default 0: the corpus
//! only, so `cargo test` stays fast), mutates corpus entries and generates
//! structured inputs (JSON frames from the protocols' vocabulary, JWTs with
//! chosen headers and claims, some validly signed so the claim checks run).
//! `scripts/test` runs it for a bounded time. A target that panics fails the
//! run; the input is written to `target/fuzz-crashes/` and its path and the
//! seed (`FUZZ_SEED` to replay) are printed.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a harness that cannot set up should stop loudly; indexes are in bounds by construction; its report is its output"
)]

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use switchboard::app::AppState;
use switchboard::auth::credential::Via;
use switchboard::config::{self, Config, MasterKey};

/// The issuer and client of the ID tokens the harness signs.
const ISSUER: &str = "https://idp.fuzz.example.com/";
const CLIENT_ID: &str = "fuzz-client";
const HMAC_SECRET: &str = "fuzz-hmac-secret-0123456789abcdef0123456789";
/// Inputs longer than this are cut: the parsers refuse far smaller ones.
const MAX_INPUT: usize = 64 * 1024;

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    GuestFrame,
    AgentFrame,
    IdToken,
    SessionJwt,
    HistoryToken,
    RefreshToken,
    Bearer,
}

impl Target {
    const ALL: [Target; 7] = [
        Target::GuestFrame,
        Target::AgentFrame,
        Target::IdToken,
        Target::SessionJwt,
        Target::HistoryToken,
        Target::RefreshToken,
        Target::Bearer,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::GuestFrame => "guest_frame",
            Target::AgentFrame => "agent_frame",
            Target::IdToken => "id_token",
            Target::SessionJwt => "session_jwt",
            Target::HistoryToken => "history_token",
            Target::RefreshToken => "refresh_token",
            Target::Bearer => "bearer",
        }
    }

    fn is_token(self) -> bool {
        !matches!(self, Target::GuestFrame | Target::AgentFrame)
    }
}

/// What the targets run against: a node's services on a throwaway
/// embedded engine, and a runtime for the async ones.
struct Bench {
    state: AppState,
    runtime: tokio::runtime::Runtime,
    jwks: Vec<u8>,
    hmac: SecretString,
    _data: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let data = tempfile::tempdir().expect("a temporary directory");
        let mut env = HashMap::new();
        env.insert(
            config::ENV_DATA_DIR.to_owned(),
            data.path().display().to_string(),
        );
        env.insert(
            config::ENV_MASTER_KEY.to_owned(),
            MasterKey::generate().to_base64(),
        );
        env.insert(
            config::ENV_BOOTSTRAP_TOKEN.to_owned(),
            "sbb_fuzz_bootstrap_token_0123456789abcdef".to_owned(),
        );
        let config = Config::load_with(None, |name| env.get(name).cloned()).expect("config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let server = runtime
            .block_on(switchboard::Server::build(config))
            .expect("a node");
        // A key set with an RSA key (from the hostile IdP's test keys is
        // not reachable here: a JWK written out) and odd entries besides.
        let jwks = br#"{"keys":[
            {"kty":"RSA","kid":"rsa-1","use":"sig","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
            {"kty":"EC","kid":"ec-1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"oct","kid":"sym","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"},
            {"kty":"nope"}
        ]}"#
        .to_vec();
        Bench {
            state: server.state().clone(),
            runtime,
            jwks,
            hmac: SecretString::from(HMAC_SECRET),
            _data: data,
        }
    }

    /// Runs `input` through `target`. Refusals are expected; only a panic
    /// fails.
    fn run(&self, target: Target, input: &[u8]) {
        let text = String::from_utf8_lossy(input);
        match target {
            Target::GuestFrame => {
                let _ = switchboard::gateway::guest::frames::parse(
                    &text,
                    &switchboard::limits::MessageLimits::default(),
                );
            }
            Target::AgentFrame => {
                let _ = switchboard::gateway::agent::parse_frame(&text);
            }
            Target::IdToken => {
                let (jwks, token) = split_jwks(&text, &self.jwks);
                for nonce in [None, Some("n-0S6_WzA2Mj")] {
                    let _ = switchboard::auth::oidc::verify_untrusted(
                        &jwks, ISSUER, CLIENT_ID, &self.hmac, token, nonce,
                    );
                }
            }
            Target::SessionJwt => {
                let tokens = &self.state.visitor_tokens;
                let now = chrono::Utc::now();
                self.runtime.block_on(async {
                    let _ = tokens.verify(&text, uuid::Uuid::nil(), now).await;
                    let _ = tokens.verify_own_audience(&text, now).await;
                });
            }
            Target::HistoryToken => {
                let auth = &self.state.auth;
                let _ = auth
                    .verify_scoped(switchboard::gateway::guest::socket::HISTORY_AUDIENCE, &text);
                if let Ok(subject) = auth.verify_scoped("switchboard:history", &text) {
                    let _ = switchboard::gateway::guest::socket::parse_history_subject(&subject);
                }
                let _ = switchboard::gateway::guest::socket::parse_history_subject(&text);
            }
            Target::RefreshToken => {
                let secret = SecretString::from(text.to_string());
                self.runtime.block_on(async {
                    let _ = self.state.visitor_tokens.refresh_family(&secret).await;
                });
            }
            Target::Bearer => {
                let mut headers = axum::http::HeaderMap::new();
                for (name, prefix) in [
                    (axum::http::header::AUTHORIZATION, "Bearer "),
                    (axum::http::header::COOKIE, "sb_session="),
                    (axum::http::header::SEC_WEBSOCKET_PROTOCOL, "bearer, "),
                ] {
                    if let Ok(value) = axum::http::HeaderValue::from_bytes(
                        [prefix.as_bytes(), input].concat().as_slice(),
                    ) {
                        headers.insert(name, value);
                    }
                }
                let method = axum::http::Method::POST;
                self.runtime.block_on(async {
                    let _ = self
                        .state
                        .auth
                        .authenticate(&headers, Via::Request(&method))
                        .await;
                    let _ = self
                        .state
                        .auth
                        .authenticate(
                            &headers,
                            Via::Socket {
                                own_origin: "http://127.0.0.1",
                            },
                        )
                        .await;
                });
            }
        }
    }
}

/// An ID-token input may carry its own key set before a newline, so key
/// sets are fuzzed too; otherwise the bench's is used.
fn split_jwks<'a>(text: &'a str, default: &[u8]) -> (Vec<u8>, &'a str) {
    match text.split_once('\n') {
        Some((jwks, token)) if jwks.trim_start().starts_with('{') => {
            (jwks.as_bytes().to_vec(), token)
        }
        _ => (default.to_vec(), text),
    }
}

/// Words of the protocols, for structured generation and splicing.
const GUEST_ACTIONS: &[&str] = &[
    "configureSession",
    "configureAuthenticatedSession",
    "onMessage",
    "echo",
    "getJwt",
    "getConfiguration",
    "closeSession",
    "onAttachment",
    "deleteAttachment",
    "",
];
const AGENT_TYPES: &[&str] = &[
    "setPresence",
    "accept",
    "decline",
    "send",
    "typing",
    "end",
    "transfer",
    "read",
    "directory",
    "",
];
const KEYS: &[&str] = &[
    "action",
    "type",
    "token",
    "tracingId",
    "requestId",
    "deploymentId",
    "message",
    "text",
    "content",
    "metadata",
    "contentType",
    "quickReply",
    "buttonResponse",
    "events",
    "data",
    "code",
    "startNew",
    "lastSequence",
    "conversationId",
    "status",
    "queueIds",
    "id",
    "wrapUp",
    "targetQueueId",
    "targetAgentId",
    "payload",
    "attachment",
    "fileName",
    "fileType",
    "fileSize",
    "closeAllConnections",
    "card",
    "cards",
    "actions",
    "url",
    "defaultAction",
    "originatingMessageId",
    "customAttributes",
    "__proto__",
];
const ALGS: &[&str] = &[
    "RS256", "ES256", "PS256", "HS256", "none", "None", "RS512", "ES512", "EdDSA", "HS512",
    "rs256", "",
];
const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "azp",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "auth_time",
    "sid",
    "jti",
    "org",
    "identity",
];

fn random_string(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => String::new(),
        1 => "x".repeat(rng.below(5000)),
        2 => "\u{0}\u{1b}[31m\u{202e}\r\n".to_owned(),
        3 => uuid::Uuid::from_u128(u128::from(rng.next())).to_string(),
        4 => "\u{1F600}é\u{FFFD}".repeat(rng.below(50)),
        5 => (*rng.pick(KEYS)).to_owned(),
        _ => format!("s{}", rng.next()),
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> serde_json::Value {
    use serde_json::{Value, json};
    let leaf = depth > 4 || rng.chance(3);
    if leaf {
        return match rng.below(9) {
            0 => Value::Null,
            1 => json!(rng.chance(2)),
            2 => json!(rng.next()),
            3 => json!(-(rng.below(1000) as i64)),
            4 => json!(f64::from(u32::try_from(rng.below(1000)).unwrap_or(0)) / 7.0),
            5 => json!(u64::MAX),
            6 => json!(i64::MIN),
            _ => json!(random_string(rng)),
        };
    }
    if rng.chance(3) {
        Value::Array(
            (0..rng.below(6))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        )
    } else {
        let mut map = serde_json::Map::new();
        for _ in 0..rng.below(8) {
            map.insert((*rng.pick(KEYS)).to_owned(), random_json(rng, depth + 1));
        }
        Value::Object(map)
    }
}

/// A frame of the protocol's shape with random fields and values.
fn structured_frame(rng: &mut Rng, target: Target) -> Vec<u8> {
    let mut frame = match random_json(rng, 1) {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    match target {
        Target::GuestFrame => {
            frame.insert("action".to_owned(), (*rng.pick(GUEST_ACTIONS)).into());
            if rng.chance(2) {
                frame.insert("token".to_owned(), uuid::Uuid::nil().to_string().into());
            }
        }
        _ => {
            frame.insert("type".to_owned(), (*rng.pick(AGENT_TYPES)).into());
        }
    }
    serde_json::to_vec(&frame).unwrap_or_default()
}

/// A JWT with a chosen header and claims; signed with the bench's HMAC
/// secret one time in three, so the checks after the signature run.
fn structured_token(rng: &mut Rng) -> Vec<u8> {
    use serde_json::json;
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::Map::new();
    let base = json!({
        "iss": ISSUER, "sub": "user-1", "aud": CLIENT_ID, "exp": now + 300, "iat": now,
        "nonce": "n-0S6_WzA2Mj", "email": "a@example.com", "email_verified": true,
    });
    if let Some(object) = base.as_object() {
        for (key, value) in object {
            if !rng.chance(6) {
                claims.insert(key.clone(), value.clone());
            }
        }
    }
    for _ in 0..rng.below(3) {
        claims.insert((*rng.pick(CLAIMS)).to_owned(), random_json(rng, 3));
    }
    let mut header = serde_json::Map::new();
    header.insert("alg".to_owned(), (*rng.pick(ALGS)).into());
    if rng.chance(2) {
        header.insert(
            "kid".to_owned(),
            (*rng.pick(&[
                "rsa-1",
                "ec-1",
                "sym",
                "../../etc/passwd",
                "' OR 1=1 --",
                "",
            ]))
            .into(),
        );
    }
    if rng.chance(4) {
        header.insert("jwk".to_owned(), random_json(rng, 2));
    }
    let header_json = serde_json::to_vec(&header).unwrap_or_default();
    let claims_json = serde_json::to_vec(&claims).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header_json),
        URL_SAFE_NO_PAD.encode(&claims_json)
    );
    let signature = if rng.chance(3) {
        let key = jsonwebtoken::EncodingKey::from_secret(HMAC_SECRET.as_bytes());
        let hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(&hs256, &claims, &key)
            .ok()
            .and_then(|t| t.rsplit('.').next().map(str::to_owned))
            .unwrap_or_default()
    } else {
        let bytes: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let mut token = format!("{signing_input}.{signature}");
    if rng.chance(8) {
        token.push_str(".extra");
    }
    token.into_bytes()
}

/// Bytes that break JSON and JWTs in interesting places.
const WORDS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b".",
    b"=",
    b"\xff\xfe",
    b"\xc3\x28",
];

/// A byte-level mutation of `input`, splicing from `others`.
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(len + 1);
                out.insert(at, rng.next() as u8);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let end = (at + rng.below(32) + 1).min(len);
                out.drain(at..end);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + rng.below(64) + 1).min(len);
                let copy = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            4 if !others.is_empty() => {
                let other = rng.pick(others);
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let end = (from + rng.below(128) + 1).min(other.len());
                    let to = rng.below(len + 1);
                    out.splice(to..to, other[from..end].iter().copied());
                }
            }
            5 => {
                let word: &&[u8] = rng.pick(WORDS);
                let to = rng.below(len + 1);
                out.splice(to..to, word.iter().copied());
            }
            6 => {
                let nesting = rng.below(200);
                let to = rng.below(len + 1);
                out.splice(to..to, std::iter::repeat_n(b'[', nesting));
            }
            7 if len > 0 => {
                let at = rng.below(len);
                out.truncate(at);
            }
            _ => {
                let at = rng.below(len + 1);
                let key = rng.pick(KEYS).as_bytes();
                out.splice(at..at, key.iter().copied());
            }
        }
    }
    out.truncate(MAX_INPUT);
    out
}

fn corpus_dir(target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target.name())
}

fn load_corpus(target: Target) -> Vec<(PathBuf, Vec<u8>)> {
    let mut entries: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Runs one input; on a panic, keeps the input and answers where.
fn attempt(bench: &Bench, target: Target, input: &[u8]) -> Result<(), PathBuf> {
    match catch_unwind(AssertUnwindSafe(|| bench.run(target, input))) {
        Ok(()) => Ok(()),
        Err(_) => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            let _ = std::fs::create_dir_all(&dir);
            let name = format!(
                "{}-{:016x}",
                target.name(),
                input
                    .iter()
                    .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b))
                        .wrapping_mul(0x100_0000_01b3))
            );
            let path = dir.join(name);
            let _ = std::fs::write(&path, input);
            Err(path)
        }
    }
}

fn main() -> ExitCode {
    // `cargo test -- <filter>` passes arguments; run only when asked for
    // by name or unfiltered (the harness has no test names of its own).
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "fuzz".contains(a.as_str())) {
        return ExitCode::SUCCESS;
    }
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    // Expected refusals are quiet; a panic's message is printed by the hook.
    let bench = Bench::new();
    let mut failures = Vec::new();
    let per_target = Duration::from_secs(seconds) / Target::ALL.len() as u32;
    println!("fuzz: seed {seed}, {seconds} s of generation after the corpus");
    for target in Target::ALL {
        let corpus = load_corpus(target);
        for (path, input) in &corpus {
            if let Err(crash) = attempt(&bench, target, input) {
                failures.push(format!(
                    "{}: corpus entry {} panics (copy at {})",
                    target.name(),
                    path.display(),
                    crash.display()
                ));
            }
        }
        let inputs: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
        let mut rng = Rng(seed ^ (target as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let deadline = Instant::now() + per_target;
        let mut runs = 0u64;
        while Instant::now() < deadline {
            let input = match rng.below(3) {
                0 if !inputs.is_empty() => {
                    let seed_input = rng.pick(&inputs).clone();
                    mutate(&mut rng, &seed_input, &inputs)
                }
                1 if target.is_token() => structured_token(&mut rng),
                1 => structured_frame(&mut rng, target),
                _ if target.is_token() => {
                    let token = structured_token(&mut rng);
                    mutate(&mut rng, &token, &inputs)
                }
                _ => {
                    let frame = structured_frame(&mut rng, target);
                    mutate(&mut rng, &frame, &inputs)
                }
            };
            runs += 1;
            if let Err(crash) = attempt(&bench, target, &input) {
                failures.push(format!(
                    "{}: a generated input panics (seed {seed}; kept at {})",
                    target.name(),
                    crash.display()
                ));
                break;
            }
        }
        println!(
            "fuzz {}: {} corpus entries, {runs} generated inputs",
            target.name(),
            inputs.len()
        );
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for failure in &failures {
            eprintln!("{failure}");
        }
        ExitCode::FAILURE
    }
}
