//! Routing under bursts, end to end: first messages are answered from the
//! log while the assignment runs elsewhere (or cannot run at all); one
//! assigner per queue fills every agent to its capacity, offering each
//! conversation once at a time; a declined conversation comes back after the
//! queue's cool-down; a conversation past the queue's wait limit ends and the
//! visitor is told; an agent on all its queues is offered from a queue made
//! after it went available. Across node processes on one Redis: a burst on
//! one node is assigned to agents on another, and a node killed while it
//! holds a queue's lease is taken over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use switchboard::engine::{Engine, Lease, RedisEngine, Space};
use switchboard::routing::model::ConversationState;
use tokio::sync::watch;
use uuid::Uuid;

use crate::multi_node::cluster_env;
use crate::on_both_engines;
use crate::support::agent::Agent;
use crate::support::app::{Api, EngineKind, TestApp};
use crate::support::guest::{Guest, conversation_of, new_token, presence, seq};
use crate::support::node::Node;
use crate::support::redis::RedisServer;
use crate::support::site::{Site, SiteSpec};
use crate::support::ws::WAIT;

/// A visitor's first message on a new session: the socket, the
/// conversation it opened and the sequence the message was answered with.
async fn visitor_says(api: &Api, deployment: &str, text: &str) -> (Guest, Uuid, u64) {
    let mut guest = api.configured_guest(deployment, &new_token()).await;
    let frame = guest.text_frame(text);
    let answer = guest.answer(frame).await;
    (guest, conversation_of(&answer), seq(&answer))
}

/// A burst of `n` first messages at once.
async fn burst(api: &Api, deployment: &str, n: usize) -> Vec<(Guest, Uuid, u64)> {
    let says = (0..n).map(|i| {
        let text = format!("visitor {i} needs help");
        async move { visitor_says(api, deployment, &text).await }
    });
    join_all(says).await
}

/// What one agent did while it took offers.
#[derive(Debug, Default)]
struct Served {
    /// The conversations offered to it, in order.
    offers: Vec<String>,
    /// The most conversations it held at once (as its socket's deltas
    /// say).
    most_held: usize,
    /// What it holds now.
    held: std::collections::HashSet<String>,
}

/// Takes every offer the way a busy agent does: accepts it, then ends it,
/// which frees its place for the next one. Requests are sent without
/// waiting for their answers, so no offer is read past. Returns once the
/// agents together have ended `total` conversations.
async fn serve(mut agent: Agent, ended: Arc<watch::Sender<usize>>, total: usize) -> Served {
    let mut all_ended = ended.subscribe();
    let mut served = Served::default();
    loop {
        let frame = tokio::select! {
            frame = agent.next() => frame,
            _ = all_ended.wait_for(|n| *n >= total) => return served,
        };
        match frame["type"].as_str() {
            Some("conversation") => {
                let id = frame["conversation"]["id"].as_str().unwrap().to_owned();
                served.held.insert(id);
                served.most_held = served.most_held.max(served.held.len());
            }
            Some("removed" | "offerRevoked") => {
                let id = frame["conversationId"].as_str().unwrap_or_default();
                served.held.remove(id);
            }
            Some("offer") => {
                let id = frame["conversation"]["id"].as_str().unwrap().to_owned();
                served.offers.push(id.clone());
                agent
                    .send(json!({ "type": "accept", "requestId": format!("accept:{id}"), "conversationId": id }))
                    .await;
            }
            Some("response") => {
                assert_eq!(frame["ok"], true, "{frame}");
                let request = frame["requestId"].as_str().unwrap_or_default();
                if let Some(id) = request.strip_prefix("accept:") {
                    agent
                        .send(json!({ "type": "end", "requestId": format!("end:{id}"), "conversationId": id }))
                        .await;
                } else if request.starts_with("end:") {
                    ended.send_modify(|n| *n += 1);
                }
            }
            _ => {}
        }
    }
}

/// Agents serving until `total` conversations ended; what each did.
async fn serve_all(agents: Vec<Agent>, total: usize) -> Vec<Served> {
    let ended = Arc::new(watch::Sender::new(0));
    let serving = agents
        .into_iter()
        .map(|agent| tokio::spawn(serve(agent, ended.clone(), total)));
    let all = tokio::time::timeout(Duration::from_secs(120), join_all(serving))
        .await
        .expect("every conversation got an agent in time");
    all.into_iter().map(Result::unwrap).collect()
}

/// Every conversation offered exactly once (nobody declined, so once at a
/// time means once), and no agent ever held more than `capacity`.
#[track_caller]
fn assert_offered_once_within(served: &[Served], conversations: &[Uuid], capacity: usize) {
    let mut offers: HashMap<String, usize> = HashMap::new();
    for s in served {
        for id in &s.offers {
            *offers.entry(id.clone()).or_default() += 1;
        }
        assert!(s.most_held <= capacity, "held {} at once", s.most_held);
    }
    assert_eq!(
        offers.len(),
        conversations.len(),
        "every conversation offered"
    );
    for c in conversations {
        assert_eq!(offers.get(&c.to_string()), Some(&1), "offers of {c}");
    }
}

/// An agent (an API client of the site's organization) on the socket of
/// `api`, available for all its queues, its snapshot read.
async fn available(api: &Api, site: &Site, name: &str) -> Agent {
    let (_, token) = api.client(&site.admin, name, &["agent"]).await;
    let (mut agent, _) = api.agent(&token).await;
    agent.available().await;
    agent
}

async fn a_burst_is_answered_at_once_and_assigned_within_capacity(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app
        .site(&SiteSpec::new().queue(json!({ "name": "Support", "agentCapacity": 2 })))
        .await;
    // A node that died holding the queue's lease: nobody may assign until
    // it runs out.
    let engine = app.state().store.engine().clone();
    let queue = site.queue.clone();
    let phantom = b"a node that died";
    let held = engine
        .lease(Space::AssignLease, &queue, phantom, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(held, Lease::Held);

    // Every first message is answered from the log, routing or not.
    let visitors = burst(&app, &site.deployment, 30).await;
    assert!(visitors.iter().all(|(_, _, seq)| *seq == 1));
    let conversations: Vec<Uuid> = visitors.iter().map(|(_, c, _)| *c).collect();
    for c in &conversations {
        let state = app
            .state()
            .routing
            .conversation(app.org(), *c)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(state.state, ConversationState::Waiting { .. }));
    }

    // The lease is free again: the agents going available wake the queue.
    assert!(
        engine
            .release(Space::AssignLease, &queue, phantom)
            .await
            .unwrap()
    );
    let mut agents = Vec::new();
    for name in ["Ann", "Bob", "Cy"] {
        agents.push(available(&app, &site, name).await);
    }
    let served = serve_all(agents, conversations.len()).await;
    assert_offered_once_within(&served, &conversations, 2);
    // The work was shared, not left to one agent.
    assert!(served.iter().all(|s| !s.offers.is_empty()), "{served:?}");
}
on_both_engines!(a_burst_is_answered_at_once_and_assigned_within_capacity);

async fn declined_by_everyone_it_is_offered_again_after_the_cool_down(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app
        .site(&SiteSpec::new().queue(json!({ "name": "Support", "declineCooldownSeconds": 1 })))
        .await;
    let mut agent = available(&app, &site, "Grace").await;
    let (_visitor, conversation, _) = visitor_says(&app, &site.deployment, "hello").await;
    agent.offer_of(conversation).await;
    agent
        .ok(json!({ "type": "decline", "conversationId": conversation }))
        .await;
    // The only agent declined: not offered again at once...
    let id = conversation.to_string();
    agent
        .none_within(Duration::from_millis(300), |f| {
            f["type"] == "offer" && f["conversation"]["id"] == id.as_str()
        })
        .await;
    // ...but once the cool-down has passed, rather than never.
    let offer = agent.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["state"], "offered");
    agent
        .ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
}
on_both_engines!(declined_by_everyone_it_is_offered_again_after_the_cool_down);

async fn past_the_wait_limit_the_visitor_is_told(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app
        .site(&SiteSpec::new().queue(json!({ "name": "Support", "maxWaitSeconds": 1 })))
        .await;
    // Nobody is there to take it.
    let (mut visitor, conversation, _) = visitor_says(&app, &site.deployment, "anyone?").await;
    let told = visitor
        .until_text("Sorry, no agent could take your conversation in time. Please try again later.")
        .await;
    assert_eq!(told["body"]["direction"], "Outbound");
    assert_eq!(told["body"]["channel"]["from"]["nickname"], "Support");
    assert_eq!(conversation_of(&told), conversation);
    let disconnect = visitor.next().await;
    assert_eq!(presence(&disconnect), "Disconnect", "{disconnect}");
    let state = app
        .state()
        .routing
        .conversation(app.org(), conversation)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        state.state,
        ConversationState::Ended { wrap_up: Some(ref code), .. } if code == "maxWaitExceeded"
    ));
}
on_both_engines!(past_the_wait_limit_the_visitor_is_told);

async fn an_agent_on_all_its_queues_is_offered_from_a_newer_queue(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    // Available without naming queues...
    let mut agent = available(&app, &site, "Grace").await;
    // ...before this queue (and its deployment) existed.
    let later = app
        .site_as(
            &site.admin,
            &SiteSpec::new().queue(json!({ "name": "Later" })),
        )
        .await;
    let (_visitor, conversation, _) = visitor_says(&app, &later.deployment, "hello").await;
    let offer = agent.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["queueId"], later.queue);
}
on_both_engines!(an_agent_on_all_its_queues_is_offered_from_a_newer_queue);

/// Two nodes on one Redis, set up through node `a`: a guest site whose
/// queue gives each agent `capacity`, made by a new admin client.
async fn cluster_site(a: &Node, capacity: u32) -> Site {
    let api = a.api();
    let admin = api.client_token(a.bootstrap(), &["admin"]).await;
    let spec = SiteSpec::new().queue(json!({ "name": "Support", "agentCapacity": capacity }));
    api.site_as(&admin, &spec).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_one_node_is_assigned_to_agents_on_another() {
    let redis = RedisServer::start();
    let env = cluster_env(&redis);
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let site = cluster_site(&a, 3).await;
    let mut agents = Vec::new();
    for i in 0..10 {
        agents.push(available(&b.api(), &site, &format!("Agent {i}")).await);
    }
    let serving = tokio::spawn(serve_all(agents, 200));

    let visitors = burst(&a.api(), &site.deployment, 200).await;
    assert!(
        visitors.iter().all(|(_, _, seq)| *seq == 1),
        "every first message answered with its sequence"
    );
    let conversations: Vec<Uuid> = visitors.iter().map(|(_, c, _)| *c).collect();
    let served = serving.await.unwrap();
    assert_offered_once_within(&served, &conversations, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_killed_is_taken_over() {
    let redis = RedisServer::start();
    let env = cluster_env(&redis);
    let mut a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let site = cluster_site(&a, 3).await;
    let engine = Engine::Redis(
        RedisEngine::connect(&redis.url(), &env["SWITCHBOARD_REDIS_PREFIX"])
            .await
            .unwrap(),
    );

    // Visitors on A, no agent anywhere: A's assigner holds the queue's
    // lease while they wait.
    let visitors = burst(&a.api(), &site.deployment, 5).await;
    let conversations: Vec<Uuid> = visitors.iter().map(|(_, c, _)| *c).collect();
    let holder = held_lease(&engine, &site.queue).await;

    // A dies holding it; agents come up on B.
    a.kill9();
    let agents = vec![
        available(&b.api(), &site, "Ann").await,
        available(&b.api(), &site, "Bob").await,
    ];
    // B takes over once the dead node's lease has run out.
    let served = serve_all(agents, conversations.len()).await;
    assert_offered_once_within(&served, &conversations, 3);
    let now_held = engine.peek(Space::AssignLease, &site.queue).await.unwrap();
    assert!(
        now_held.is_none_or(|h| h != holder),
        "still the dead node's"
    );
}

/// The holder of a queue's lease, once there is one.
async fn held_lease(engine: &Engine, queue: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(holder) = engine.peek(Space::AssignLease, queue).await.unwrap() {
            return holder;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody took the queue's lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
