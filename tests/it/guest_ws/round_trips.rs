//! What a message costs in storage. A visitor's, on Redis, once the socket
//! follows its conversation: one command before the answer (the append
//! script, which takes the session's rate token, logs and publishes), and
//! again after anything that could change where the next message goes. An
//! agent's, once its socket holds the conversation as connected: two (the
//! agent's and its organization's rate in one script, then the append),
//! and a read again once the conversation changed.
//! Counted with `MONITOR` on the test's own Redis, which shows every
//! command a client sent (those a script ran show as `lua`, and are part of
//! the same round trip).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchboard::config;
use switchboard::routing::model::session_id;
use uuid::Uuid;

use crate::support::RedisServer;
use crate::support::app::{EngineKind, Setup, TestApp};
use crate::support::guest::{conversation_of, new_token, presence, seq};
use crate::support::redis::cli;

/// How long `MONITOR` may take to show a command.
const SHOWN: Duration = Duration::from_secs(10);

/// `redis-cli monitor` on a server: every command sent to it, one a line.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Monitor {
    fn start(redis: &RedisServer) -> Monitor {
        let mut child = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &redis.port().to_string(),
                "monitor",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let monitor = Monitor {
            child,
            lines,
            port: redis.port(),
        };
        // `OK` once the monitor is on.
        let first = monitor.lines.recv_timeout(SHOWN).expect("MONITOR started");
        assert_eq!(first.trim(), "OK");
        monitor
    }

    /// The commands shown from now until a marker sent after them, those
    /// a script ran left out: what clients sent.
    fn sent_until_now(&self) -> Vec<String> {
        let marker = format!("fence-{}", Uuid::new_v4());
        cli(self.port, &["ECHO", &marker]);
        let mut sent = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(SHOWN)
                .expect("the marker shown by MONITOR");
            if line.contains(&marker) {
                return sent;
            }
            if !line.contains("[0 lua]") {
                sent.push(line);
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_conversation_takes_one_round_trip_per_message() {
    let redis = RedisServer::start();
    let setup = Setup::new(EngineKind::Redis).set(config::ENV_REDIS_URL, &redis.url());
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let token = new_token();
    let session = session_id(&token).to_string();
    let mut guest = app.configured_guest(&site.deployment, &token).await;
    // The first message opens the conversation: reads and a commit.
    let first = guest.say("hello").await;
    let conversation = conversation_of(&first).to_string();

    let monitor = Monitor::start(&redis);
    for n in 2..=4 {
        let answer = guest.say(&format!("message {n}")).await;
        assert_eq!(seq(&answer), n, "{answer}");
    }
    // What this session's messages sent: anything naming the session (its
    // record, its rate bucket) or the conversation (its record, its log).
    let sent: Vec<String> = monitor
        .sent_until_now()
        .into_iter()
        .filter(|line| line.contains(&session) || line.contains(&conversation))
        .collect();
    assert_eq!(sent.len(), 3, "one command per message: {sent:#?}");
    for line in &sent {
        let lower = line.to_lowercase();
        assert!(
            lower.contains("\"evalsha\"")
                && line.contains(&format!("{{c:{conversation}}}:rate:gm:{session}")),
            "the append script, metered by the session's bucket: {line}"
        );
    }

    // The agent ends it: the disconnect the socket shows empties the
    // cache, so the next message reads the session and the conversation
    // again, and goes to a new conversation instead of the ended one.
    let conversation_id = conversation.parse().unwrap();
    let ada = app.agent_accepts(site.queue_id(), conversation_id).await;
    assert_eq!(presence(&guest.next().await), "Join");
    app.state()
        .routing
        .end(&ada, conversation_id, None, Utc::now())
        .await
        .unwrap();
    assert_eq!(presence(&guest.next().await), "Disconnect");
    monitor.sent_until_now();
    let opened = guest.say("after the end").await;
    let new_conversation = conversation_of(&opened).to_string();
    assert_ne!(new_conversation, conversation, "{opened}");
    assert_eq!(seq(&opened), 1, "{opened}");
    let sent = monitor.sent_until_now();
    assert!(
        sent.iter()
            .any(|line| line.contains(&format!("session:{session}"))),
        "the uncached message read the session: {sent:#?}"
    );
    // Cached again from what that message read.
    let answer = guest.say("cached again").await;
    assert_eq!(seq(&answer), 2, "{answer}");
    let sent: Vec<String> = monitor
        .sent_until_now()
        .into_iter()
        .filter(|line| line.contains(&session) || line.contains(&new_conversation))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_message_takes_two_round_trips() {
    let redis = RedisServer::start();
    let setup = Setup::new(EngineKind::Redis).set(config::ENV_REDIS_URL, &redis.url());
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let (_, token) = app.client(&site.admin, "Grace", &["agent"]).await;
    let mut visitor = app.configured_guest(&site.deployment, &new_token()).await;
    visitor.deliver("hello", "v1").await;
    let (mut agent, _) = app.agent(&token).await;
    agent.available().await;
    let conversation = agent.accept_first_offer().await;
    // The socket has read the conversation as connected once it shows it so.
    agent
        .find("the conversation connected", |f| {
            f["type"] == "conversation"
                && f["conversation"]["id"] == conversation.as_str()
                && f["conversation"]["state"] == "connected"
        })
        .await;
    let send = |text: &str| json!({ "type": "send", "conversationId": conversation, "text": text });

    let monitor = Monitor::start(&redis);
    for n in 0..3 {
        agent.ok(send(&format!("reply {n}"))).await;
    }
    let sent: Vec<String> = monitor
        .sent_until_now()
        .into_iter()
        .filter(|line| line.contains(&conversation) || line.contains(":e:rate:"))
        .collect();
    assert_eq!(sent.len(), 6, "two commands per message: {sent:#?}");
    for pair in sent.chunks(2) {
        let [rate, append] = pair else {
            panic!("commands in pairs: {pair:#?}");
        };
        assert!(
            rate.to_lowercase().contains("\"evalsha\"")
                && rate.contains(":e:rate:am:")
                && rate.contains(":e:rate:om:"),
            "the agent's and the organization's rate in one script: {rate}"
        );
        assert!(
            append.to_lowercase().contains("\"evalsha\"")
                && append.contains(&format!("{{c:{conversation}}}:log")),
            "the append script: {append}"
        );
    }

    // Ended: the change the socket hears stops the shortcut, and a message
    // is refused as the conversation now says.
    agent
        .ok(json!({ "type": "end", "conversationId": conversation }))
        .await;
    agent
        .until("the conversation removed", |f| {
            f["type"] == "removed" && f["conversationId"] == conversation.as_str()
        })
        .await;
    monitor.sent_until_now();
    agent.refused(send("too late"), "not_allowed").await;
    let sent = monitor.sent_until_now();
    assert!(
        !sent
            .iter()
            .any(|line| line.contains(&format!("{{c:{conversation}}}:log"))),
        "nothing appended after the end: {sent:#?}"
    );
}
