//! A Redis master dies mid-conversation, under two running nodes: a
//! Sentinel failover, and a Redis Cluster master failover. The nodes report
//! not-ready while Redis cannot serve them, come back by themselves, and
//! the conversation goes on with every acknowledged message kept and none
//! shown twice.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::multi_node::{nodes_env, set_up};
use crate::support::agent::Agent;
use crate::support::guest::{Guest, new_token};
use crate::support::node::Node;
use crate::support::redis::cluster::RedisCluster;
use crate::support::redis::sentinel::{MASTER_NAME, SentinelSet};

/// Long enough for a failover (Sentinel's down-after plus an election, or
/// the cluster's node timeout) and the nodes' reconnection.
const RECOVERY: Duration = Duration::from_secs(60);

async fn visitor_on(node: &Node, deployment: &str, token: &str, last: Option<u64>) -> Guest {
    let mut visitor = node.api().guest(deployment, token).await;
    let extra = match last {
        Some(last) => json!({ "lastSequence": last }),
        None => json!({}),
    };
    let session = visitor.configure_with(extra).await;
    assert_eq!(session["class"], "SessionResponse", "{session}");
    visitor
}

/// The conversation before the failover: a visitor on A, the agent on B,
/// messages both ways. Answers the sockets, the conversation id and the
/// texts acknowledged so far.
async fn conversation(a: &Node, b: &Node) -> (Guest, Agent, String, String, Vec<String>) {
    let (deployment, agent_token) = set_up(a).await;
    let token = new_token();
    let (mut agent, _) = b.api().agent(&agent_token).await;
    agent.available().await;
    let mut visitor = visitor_on(a, &deployment, &token, None).await;
    visitor.deliver("before 1", "b1").await;
    let conversation = agent.accept_first_offer().await;
    agent.find_text("before 1").await;
    agent.say(&conversation, "before 2").await;
    if !visitor.seen.iter().any(|(_, e)| e["text"] == "before 2") {
        visitor.until_text("before 2").await;
    }
    visitor.deliver("before 3", "b3").await;
    agent.find_text("before 3").await;
    let acknowledged = ["before 1", "before 2", "before 3"]
        .map(String::from)
        .to_vec();
    (visitor, agent, conversation, deployment, acknowledged)
}

/// After the failover: both nodes ready again by themselves, the
/// conversation goes on both ways, and a fresh socket that reads the whole
/// log sees every acknowledged message exactly once, in a gapless sequence.
async fn after_failover(
    nodes: [&Node; 2],
    mut visitor: Guest,
    mut agent: Agent,
    conversation: &str,
    mut acknowledged: Vec<String>,
) {
    // A message sent while Redis fails over may or may not be logged; the
    // visitor resends it with the same id until it is acknowledged.
    let mut during = visitor.text_frame("during");
    during["message"]["id"] = json!("d1");
    let _maybe = visitor.answer(during).await;

    for node in nodes {
        node.api()
            .await_status("/readyz", StatusCode::OK, RECOVERY)
            .await;
    }
    visitor.deliver("during", "d1").await;
    acknowledged.push("during".into());
    agent.find_text("during").await;
    agent.say(conversation, "after 1").await;
    if !visitor.seen.iter().any(|(_, e)| e["text"] == "after 1") {
        visitor.until_text("after 1").await;
    }
    visitor.deliver("after 2", "a2").await;
    agent.find_text("after 2").await;
    acknowledged.extend(["after 1", "after 2"].map(String::from));

    // The whole log, read afresh on node B.
    let token = visitor.token.clone();
    let deployment = visitor.deployment.clone();
    let mut reader = visitor_on(nodes[1], &deployment, &token, Some(0)).await;
    reader.until_text("after 2").await;
    let texts: Vec<String> = reader
        .seen
        .iter()
        .filter_map(|(_, e)| e["text"].as_str().map(String::from))
        .collect();
    let mut expected = acknowledged.clone();
    expected.sort();
    let mut got = texts.clone();
    got.sort();
    assert_eq!(got, expected, "every acknowledged message once: {texts:?}");
    let seqs: Vec<u64> = reader.seen.iter().map(|(s, _)| *s).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "each sequence once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_conversation_loses_nothing() {
    // Two replicas: after the failover the new master still has one, which
    // the nodes wait for before acknowledging.
    let set = SentinelSet::start(2);
    let env: HashMap<String, String> = nodes_env(vec![
        ("SWITCHBOARD_REDIS_SENTINELS", set.sentinels()),
        ("SWITCHBOARD_REDIS_SENTINEL_MASTER", MASTER_NAME.to_owned()),
        ("SWITCHBOARD_REDIS_PREFIX", crate::support::unique_prefix()),
        ("SWITCHBOARD_REDIS_WAIT_REPLICAS", "1".to_owned()),
    ]);
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let (visitor, agent, conversation, _, acknowledged) = conversation(&a, &b).await;

    let set = std::sync::Arc::new(set);
    let failing = tokio::task::spawn_blocking({
        let set = std::sync::Arc::clone(&set);
        move || set.fail_over()
    });
    // Not ready while the master is gone and no replica promoted yet.
    a.api()
        .await_status("/readyz", StatusCode::SERVICE_UNAVAILABLE, RECOVERY)
        .await;
    failing.await.unwrap();
    after_failover([&a, &b], visitor, agent, &conversation, acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_failover_mid_conversation_loses_nothing() {
    let cluster = RedisCluster::start(3, 1);
    let prefix = crate::support::unique_prefix();
    let env: HashMap<String, String> = nodes_env(vec![
        ("SWITCHBOARD_REDIS_CLUSTER_NODES", cluster.seeds()),
        ("SWITCHBOARD_REDIS_PREFIX", prefix.clone()),
    ]);
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let (visitor, agent, conversation, _, acknowledged) = conversation(&a, &b).await;

    // The master that owns this conversation's log dies, once its replica
    // has everything (replication is asynchronous: see docs/redis.md).
    cluster.wait_replicated();
    let owner = cluster.master_of(&format!("{prefix}{{c:{conversation}}}:log"));
    cluster.kill(owner);
    a.api()
        .await_status("/readyz", StatusCode::SERVICE_UNAVAILABLE, RECOVERY)
        .await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_settled();
        cluster
    })
    .await
    .unwrap();
    after_failover([&a, &b], visitor, agent, &conversation, acknowledged).await;
    drop(cluster);
}
