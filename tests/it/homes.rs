//! Organizations in homes of their own: on a Redis Cluster their records
//! and routing state spread over the masters, and a store written before
//! homes existed (everything under the installation's hash tag, offers,
//! online agents and push jobs in lists across organizations) is moved
//! into them at start with nothing lost.

use std::collections::BTreeMap;

use serde_json::Value;
use switchboard::engine::{Engine, RedisEngine};
use switchboard::store::{Store, migrations};

use crate::multi_node::nodes_env;
use crate::support::agent::Agent;
use crate::support::app::{EngineKind, TestApp, redis_env};
use crate::support::guest::new_token;
use crate::support::node::Node;
use crate::support::redis::{self, cli};
use crate::support::site::SiteSpec;

/// Many organizations, each with a site, through two nodes on a 3-master
/// cluster, a few of them with a conversation between a visitor on one node
/// and an agent on the other: each organization has one home, every
/// master holds some, and none more than half.
///
/// Where an organization lands is its id's hash slot: with 97 homes, a
/// master holding more than half (49, where 32 is the mean) is a 3.5
/// standard-deviation event, so this does not fail by bad luck. Counted in
/// homes, not keys: the installation's own home (the list of organizations,
/// settings) is one hash tag with hundreds of keys, which made a master
/// over half the keys a matter of luck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_spread_over_the_cluster_masters() {
    const ORGANIZATIONS: usize = 96;
    const TALKING: usize = 3;
    let env = nodes_env(redis_env(EngineKind::Cluster));
    let prefix = env["SWITCHBOARD_REDIS_PREFIX"].clone();
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let mut agents: Vec<Agent> = Vec::new();
    for n in 0..ORGANIZATIONS {
        let api = if n % 2 == 0 { a.api() } else { b.api() };
        let created = api
            .post(
                "/api/v2/organizations",
                a.bootstrap(),
                serde_json::json!({ "name": format!("Org {n}") }),
            )
            .await
            .expect(reqwest::StatusCode::CREATED);
        let client = &created["client"];
        let admin = api
            .access_token(
                client["id"].as_str().unwrap(),
                client["secret"].as_str().unwrap(),
            )
            .await;
        let site = api.site_as(&admin, &SiteSpec::new()).await;
        if n >= TALKING {
            continue;
        }
        let (_, agent_token) = api.client(&admin, "Grace", &["agent"]).await;
        let (mut agent, _) = b.api().agent(&agent_token).await;
        agent.available().await;
        let mut visitor = a.api().guest(&site.deployment, &new_token()).await;
        visitor.configure().await;
        visitor.deliver(&format!("hello from org {n}"), "v1").await;
        let conversation = agent.accept_first_offer().await;
        agent.find_text(&format!("hello from org {n}")).await;
        agent.say(&conversation, "how can I help?").await;
        visitor.until_text("how can I help?").await;
        agents.push(agent);
    }

    let cluster = redis::cluster::shared();
    let keys: BTreeMap<u16, Vec<String>> = cluster
        .masters()
        .into_iter()
        .map(|port| (port, keys_on(port, &prefix)))
        .collect();
    let counts: BTreeMap<u16, usize> = keys.iter().map(|(p, k)| (*p, k.len())).collect();
    let total: usize = counts.values().sum();
    assert_eq!(counts.len(), 3, "three masters: {counts:?}");
    assert!(
        total > 10 * ORGANIZATIONS,
        "the run wrote its keys: {counts:?}"
    );
    // One home per organization (the default one too), each on one master.
    let mut homes: BTreeMap<String, std::collections::BTreeSet<u16>> = BTreeMap::new();
    for (port, names) in &keys {
        for name in names {
            if let Some(tag) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_prefix("{o:"))
                .and_then(|rest| rest.split_once('}'))
            {
                homes.entry(tag.0.to_owned()).or_default().insert(*port);
            }
        }
    }
    assert_eq!(homes.len(), ORGANIZATIONS + 1, "one home per organization");
    assert!(homes.values().all(|masters| masters.len() == 1));
    let mut per_master: BTreeMap<u16, usize> = counts.keys().map(|port| (*port, 0)).collect();
    for port in homes.values().flatten() {
        *per_master.entry(*port).or_default() += 1;
    }
    for (port, held) in &per_master {
        assert!(
            *held > 0 && held * 2 <= homes.len(),
            "master {port} holds {held} of {} homes: {per_master:?} (keys: {counts:?})",
            homes.len()
        );
    }

    // What spans organizations reads each one's home on its own shard:
    // the list of organizations (which the sweeps walk) reads them all.
    let listed = a
        .api()
        .get("/api/v2/organizations?pageSize=100", a.bootstrap())
        .await
        .expect(reqwest::StatusCode::OK);
    assert_eq!(listed["total"], ORGANIZATIONS + 1, "{listed}");
    assert_eq!(
        listed["entities"].as_array().map(Vec::len),
        Some(ORGANIZATIONS + 1),
        "{listed}"
    );
}

/// The keys under `prefix` on the Redis at `port`.
fn keys_on(port: u16, prefix: &str) -> Vec<String> {
    cli(port, &["--scan", "--pattern", &format!("{prefix}*")])
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A store as schema version 1 left it, on one Redis: taken from the
/// records this build writes, put back under the installation's tag, with
/// the lists across organizations and the version stamp of then (and no
/// directory). The migration brings back every key as it was; then a node
/// serves from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_homes_moves_into_them() {
    let mut app = TestApp::spawn(EngineKind::Redis).await;
    let admin = app.admin().await;
    let site = app.site_as(&admin, &SiteSpec::new()).await;
    let (_, agent_token) = app.client(&admin, "Grace", &["agent"]).await;
    let (mut agent, _) = app.agent(&agent_token).await;
    agent.available().await;
    let mut visitor = app.guest(&site.deployment, &new_token()).await;
    visitor.configure().await;
    visitor
        .deliver("offered when the store is downgraded", "v1")
        .await;
    // Offered, not yet accepted: the conversation is in the offers list.
    agent.find("an offer", |f| f["type"] == "offer").await;
    let other = app.other_organization("Other").await;
    app.site_as(&other, &SiteSpec::new()).await;
    let org = app.org().0;
    drop((agent, visitor));
    app.stop().await;

    let prefix = app.setup.env["SWITCHBOARD_REDIS_PREFIX"].clone();
    let redis = redis::shared();
    let before = snapshot(redis.port(), &prefix);
    assert!(
        before.contains_key(&format!("{{o:{org}}}:c:route/org/{org}/offered")),
        "an offer is listed: {:?}",
        before.keys().collect::<Vec<_>>()
    );
    downgrade(redis.port(), &prefix);
    let old = snapshot(redis.port(), &prefix);
    assert!(old.keys().all(|k| !k.contains("{o:")), "no home is left");
    assert!(old.contains_key("{rec}:c:route/offered"));
    assert!(old.contains_key("{rec}:c:route/agents/online"));
    assert!(old.keys().all(|k| !k.contains("r:setting:home/")));

    let store = Store::new(Engine::Redis(
        RedisEngine::connect(&redis.url(), &prefix).await.unwrap(),
    ));
    let migrated = migrations::migrate(&store).await.unwrap();
    assert_eq!(
        (migrated.from, migrated.to),
        (1, migrations::SCHEMA_VERSION)
    );
    // Everything as it was, but the stamp's own version, which counts
    // its writes.
    let stamp = "{rec}:r:setting:schema-version";
    let unstamped = |mut keys: BTreeMap<String, Value>| {
        let stamp = keys.remove(stamp).map(|fields| fields["b"].clone());
        (stamp, keys)
    };
    assert_eq!(
        unstamped(snapshot(redis.port(), &prefix)),
        unstamped(before)
    );

    // A node serves from it: the deployment found by id alone, the
    // organization's records through the admin API.
    let app = app.restart().await;
    let config = app
        .call(
            reqwest::Method::GET,
            &format!(
                "/webdeployments/v1/deployments/{}/config.json",
                site.deployment
            ),
            None,
            None,
        )
        .await;
    assert_eq!(config.status, reqwest::StatusCode::OK, "{}", config.text);
    app.get(&format!("/api/v2/routing/queues/{}", site.queue), &admin)
        .await
        .expect(reqwest::StatusCode::OK);
    app.get("/api/v2/organizations", &app.bootstrap.clone())
        .await
        .expect(reqwest::StatusCode::OK);
}

/// Every lasting key under `prefix` (what has a time to live, ephemeral
/// values and rate buckets, left out: it expires on its own) with what it
/// holds; record bodies parsed, so a body rewritten with the same fields
/// compares equal.
fn snapshot(port: u16, prefix: &str) -> BTreeMap<String, Value> {
    keys_on(port, prefix)
        .into_iter()
        .filter(|key| cli(port, &["PTTL", key]).trim() == "-1")
        .map(|key| {
            let value = match cli(port, &["TYPE", &key]).trim() {
                "hash" => {
                    let lines: Vec<String> = cli(port, &["HGETALL", &key])
                        .lines()
                        .map(str::to_owned)
                        .collect();
                    let fields: serde_json::Map<String, Value> = lines
                        .chunks(2)
                        .filter_map(|pair| {
                            let [field, value] = pair else { return None };
                            let value = serde_json::from_str(value)
                                .unwrap_or_else(|_| Value::String(value.clone()));
                            Some((field.clone(), value))
                        })
                        .collect();
                    Value::Object(fields)
                }
                "zset" => sorted(&cli(port, &["ZRANGE", &key, "0", "-1"])),
                "set" => sorted(&cli(port, &["SMEMBERS", &key])),
                "string" => Value::String(cli(port, &["GET", &key]).trim().to_owned()),
                other => Value::String(format!("a {other}")),
            };
            (key[prefix.len()..].to_owned(), value)
        })
        .collect()
}

fn sorted(lines: &str) -> Value {
    let mut items: Vec<&str> = lines.lines().filter(|l| !l.is_empty()).collect();
    items.sort_unstable();
    items.into()
}

/// The lists of one organization `org` that version 1 kept across
/// organizations, by the name each had then.
fn shared_lists(org: &str) -> [(String, &'static str); 4] {
    [
        (format!("c:route/org/{org}/offered"), "route/offered"),
        (
            format!("c:route/org/{org}/agents/online"),
            "route/agents/online",
        ),
        (format!("c:push-outbox/{org}"), "push-outbox"),
        (format!("c:org/{org}/org"), "orgs"),
    ]
}

/// Writes the store under `prefix` back as schema version 1 had it.
fn downgrade(port: u16, prefix: &str) {
    let installation = format!("{prefix}{{rec}}:");
    // No directory then: its entries go, from whichever list holds them.
    for key in keys_on(port, &format!("{installation}r:setting:home/")) {
        let list = cli(port, &["HGET", &key, "c"]);
        let order = cli(port, &["HGET", &key, "o"]);
        cli(
            port,
            &[
                "ZREM",
                &format!("{installation}c:{}", list.trim()),
                order.trim(),
            ],
        );
        cli(port, &["DEL", &key]);
    }
    for key in keys_on(port, prefix) {
        let Some(rest) = key.strip_prefix(&format!("{prefix}{{o:")) else {
            continue;
        };
        let Some((org, rest)) = rest.split_once("}:") else {
            continue;
        };
        match shared_lists(org).into_iter().find(|(now, _)| now == rest) {
            Some((_, then)) => {
                let target = format!("{installation}c:{then}");
                cli(port, &["ZUNIONSTORE", &target, "2", &target, &key]);
                cli(port, &["DEL", &key]);
            }
            None => {
                cli(port, &["RENAME", &key, &format!("{installation}{rest}")]);
            }
        }
    }
    // The records in those lists named them.
    for key in keys_on(port, &format!("{installation}r:")) {
        let list = cli(port, &["HGET", &key, "c"]);
        let list = format!("c:{}", list.trim());
        let org = ["c:route/org/", "c:push-outbox/", "c:org/"]
            .into_iter()
            .find_map(|start| list.strip_prefix(start))
            .and_then(|rest| rest.split('/').next());
        let then = org.and_then(|org| {
            shared_lists(org)
                .into_iter()
                .find(|(now, _)| *now == list)
                .map(|(_, then)| then)
        });
        if let Some(then) = then {
            cli(port, &["HSET", &key, "c", then]);
        }
    }
    let stamp = format!("{installation}r:setting:schema-version");
    cli(port, &["HSET", &stamp, "b", r#"{"version":1}"#]);
}
