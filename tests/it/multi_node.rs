//! Many nodes on one Redis, as separate processes: a visitor on one node
//! chats with an agent on another (on one server, a cluster and Sentinel); a node killed with SIGKILL loses nothing
//! (and neither does an embedded node, started again on its data);
//! Redis restarting under running nodes; a node shutting down sends its
//! sockets away with 1001.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use switchboard::config::MasterKey;

use crate::support::agent::Agent;
use crate::support::app::{EngineKind, redis_env};
use crate::support::guest::{Guest, new_token};
use crate::support::node::Node;
use crate::support::redis::RedisServer;
use crate::support::site::SiteSpec;
use crate::support::ws::WAIT;

pub(crate) fn cluster_env(redis: &RedisServer) -> HashMap<String, String> {
    nodes_env(vec![
        ("REDIS_URL", redis.url()),
        ("SWITCHBOARD_REDIS_PREFIX", crate::support::unique_prefix()),
    ])
}

/// The settings of nodes that share the Redis `form` names (see
/// [`crate::support::app::redis_env`]).
pub(crate) fn nodes_env(form: Vec<(&'static str, String)>) -> HashMap<String, String> {
    let lifted = crate::support::app::lifted_limits()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let mut env = HashMap::from([
        (
            "SWITCHBOARD_MASTER_KEY".to_owned(),
            MasterKey::generate().to_base64(),
        ),
        (
            "SWITCHBOARD_BOOTSTRAP_TOKEN".to_owned(),
            format!("sbb_test_{}", uuid::Uuid::new_v4().simple()),
        ),
        (
            "SWITCHBOARD_AGENT_GRACE_SECONDS".to_owned(),
            "30".to_owned(),
        ),
        // Nodes behind one load balancer share one public URL: the issuer
        // of the tokens any of them accepts.
        (
            "SWITCHBOARD_PUBLIC_URL".to_owned(),
            "http://switchboard.test".to_owned(),
        ),
    ]);
    env.extend(lifted);
    env.extend(
        form.into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    env
}

/// A guest site (no sign-in) made through the bootstrap token, and the
/// access token of an agent "Grace": `(deployment, token)`.
pub(crate) async fn set_up(node: &Node) -> (String, String) {
    let api = node.api();
    let site = api.site_as(node.bootstrap(), &SiteSpec::new()).await;
    let (_, token) = api.client(node.bootstrap(), "Grace", &["agent"]).await;
    (site.deployment, token)
}

/// A visitor's socket on `node`, configured for session `token` (resuming
/// after `last_sequence` when given).
async fn visitor_on(
    node: &Node,
    deployment: &str,
    token: &str,
    last_sequence: Option<u64>,
) -> Guest {
    let mut visitor = node.api().guest(deployment, token).await;
    let extra = match last_sequence {
        Some(last) => json!({ "lastSequence": last }),
        None => json!({}),
    };
    let session = visitor.configure_with(extra).await;
    assert_eq!(session["class"], "SessionResponse", "{session}");
    visitor
}

/// An agent's socket on `node`, available.
async fn available_agent(node: &Node, token: &str) -> Agent {
    let (mut agent, _) = node.api().agent(token).await;
    agent.available().await;
    agent
}

/// A conversation under way: a visitor on `visitor_node` said `first`
/// (message id `id`), and an available agent on `agent_node` accepted it.
struct Chat {
    deployment: String,
    /// The visitor's session token.
    token: String,
    visitor: Guest,
    agent: Agent,
    conversation: String,
}

async fn chat(visitor_node: &Node, agent_node: &Node, first: &str, id: &str) -> Chat {
    let (deployment, agent_token) = set_up(visitor_node).await;
    let token = new_token();
    let mut agent = available_agent(agent_node, &agent_token).await;
    let mut visitor = visitor_on(visitor_node, &deployment, &token, None).await;
    visitor.deliver(first, id).await;
    let conversation = agent.accept_first_offer().await;
    Chat {
        deployment,
        token,
        visitor,
        agent,
        conversation,
    }
}

/// Waits until every node's `/readyz` answers `status`.
async fn readiness(nodes: [&Node; 2], status: StatusCode, within: Duration) {
    for node in nodes {
        node.api().await_status("/readyz", status, within).await;
    }
}

/// Sequences a visitor saw: each once, in order, without a gap.
fn assert_gapless(visitor: &Guest) {
    let seqs: Vec<u64> = visitor.seen.iter().map(|(s, _)| *s).collect();
    let expected: Vec<u64> = (1..=visitor.last_seq()).collect();
    assert_eq!(seqs, expected, "sequences seen by the visitor");
}

/// Two nodes on the Redis form `kind` names: a visitor on node A and an
/// agent on node B talk both ways, and nothing is lost or shown twice.
async fn visitor_on_one_node_agent_on_another(kind: EngineKind) {
    let env = nodes_env(redis_env(kind));
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let Chat {
        mut visitor,
        mut agent,
        conversation,
        ..
    } = chat(&a, &b, "hello from node A", "v1").await;
    agent.find_text("hello from node A").await;
    for n in 1..=5 {
        agent.say(&conversation, &format!("from B {n}")).await;
        visitor
            .deliver(&format!("from A {n}"), &format!("a{n}"))
            .await;
    }
    // The visitor's own answers may have read past the agent's last one.
    if !visitor.seen.iter().any(|(_, e)| e["text"] == "from B 5") {
        visitor.until_text("from B 5").await;
    }
    agent.find_text("from A 5").await;
    assert_gapless(&visitor);
    // A resend is answered with its first sequence, not logged again.
    let last = visitor.last_seq();
    assert!(visitor.deliver("from A 5", "a5").await <= last);
}

mod two_nodes {
    use crate::support::app::EngineKind;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_cluster() {
        super::visitor_on_one_node_agent_on_another(EngineKind::Cluster).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sentinel() {
        super::visitor_on_one_node_agent_on_another(EngineKind::Sentinel).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_and_agent_on_two_nodes_survive_a_sigkill() {
    let redis = RedisServer::start();
    let env = cluster_env(&redis);
    let mut a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    // The agent is on node B, the visitor on node A.
    let Chat {
        deployment,
        token,
        mut visitor,
        mut agent,
        conversation,
    } = chat(&a, &b, "hello from node A", "v1").await;
    agent.find_text("hello from node A").await;
    agent.say(&conversation, "hi from node B").await;
    let reply = visitor.until_text("hi from node B").await;
    assert_eq!(reply["body"]["direction"], "Outbound");
    visitor.deliver("second from A", "v2").await;
    agent.find_text("second from A").await;

    // Node A dies at once. The agent keeps talking meanwhile.
    a.kill9();
    agent.say(&conversation, "while you were away 1").await;
    agent.say(&conversation, "while you were away 2").await;

    // The visitor reconnects to node B and resumes from its last sequence.
    let last = visitor.last_seq();
    let seen_before = std::mem::take(&mut visitor.seen);
    let mut resumed = visitor_on(&b, &deployment, &token, Some(last)).await;
    resumed.until_text("while you were away 2").await;
    let texts: Vec<&str> = resumed
        .seen
        .iter()
        .filter_map(|(_, e)| e["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["while you were away 1", "while you were away 2"],
        "missed messages, once each, in order"
    );
    // A resend of a message the dead node had already logged is not logged twice.
    let again = resumed.deliver("second from A", "v2").await;
    assert!(again <= last, "a resend answers its first sequence");
    resumed.deliver("third, via node B", "v3").await;
    agent.find_text("third, via node B").await;

    // Across both sockets: every sequence once, no gap.
    resumed.seen = [seen_before, std::mem::take(&mut resumed.seen)].concat();
    resumed.seen.sort_by_key(|(s, _)| *s);
    resumed.seen.dedup_by_key(|(s, _)| *s);
    assert_gapless(&resumed);
}

/// A node on the embedded engine dies with SIGKILL just after
/// acknowledging a run of messages (an append is acknowledged once its
/// batch is durable); started again on its data directory, it has every
/// one of them, once, in order, and still knows their ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_node_killed_with_sigkill_keeps_what_it_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    let env = nodes_env(vec![(
        "SWITCHBOARD_DATA_DIR",
        data.path().display().to_string(),
    )]);
    let port = crate::support::node::free_port();
    let mut node = Node::start_on(&env, port).ready().await;
    let Chat {
        deployment,
        token,
        mut visitor,
        mut agent,
        conversation,
    } = chat(&node, &node, "first", "k0").await;
    agent.say(&conversation, "welcome").await;
    visitor.until_text("welcome").await;
    let mut sent = vec!["first".to_owned(), "welcome".to_owned()];
    let mut last = 0;
    for i in 1..=20 {
        let text = format!("message {i}");
        last = visitor.deliver(&text, &format!("k{i}")).await;
        sent.push(text);
    }
    node.kill9();

    let node = Node::start_on(&env, port).ready().await;
    let mut resumed = visitor_on(&node, &deployment, &token, Some(0)).await;
    resumed.until_text("message 20").await;
    let texts: Vec<&str> = resumed
        .seen
        .iter()
        .filter_map(|(_, e)| e["text"].as_str())
        .collect();
    assert_eq!(texts, sent, "every acknowledged message, once, in order");
    assert_gapless(&resumed);
    assert_eq!(resumed.deliver("message 20", "k20").await, last, "a resend");
    // New messages go after everything logged before the crash (the node
    // may have logged events of its own since it started).
    assert!(resumed.deliver("after", "k21").await > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_interrupts_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_persistent(dir.path());
    let env = cluster_env(&redis);
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let Chat {
        mut visitor,
        mut agent,
        conversation,
        ..
    } = chat(&a, &b, "before the restart", "r1").await;
    agent.find_text("before the restart").await;

    redis.stop();
    readiness([&a, &b], StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    redis.restart();
    readiness([&a, &b], StatusCode::OK, Duration::from_secs(30)).await;

    // The conversation goes on, both ways, across the two nodes: the bus
    // subscriptions came back by themselves.
    agent.say(&conversation, "after the restart").await;
    visitor.until_text("after the restart").await;
    visitor.deliver("still here", "r2").await;
    agent.find_text("still here").await;
    assert_gapless(&visitor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_sends_sockets_away_with_1001() {
    let redis = RedisServer::start();
    let env = cluster_env(&redis);
    let a = Node::start(&env).ready().await;
    let (deployment, _) = set_up(&a).await;
    let mut visitor = visitor_on(&a, &deployment, &new_token(), None).await;
    let stopping = tokio::task::spawn_blocking(move || a.terminate());
    assert_eq!(visitor.closed_after_frames().await, 1001);
    let output = stopping.await.unwrap();
    assert!(
        output.iter().any(|l| l.contains("shutting down")),
        "{output:?}"
    );
}
