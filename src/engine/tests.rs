//! The engine's pure parts: rate buckets, and the names stored data is
//! addressed by (which never change).

use super::*;

#[test]
fn a_bucket_admits_its_rate_forever_and_its_burst_at_once() {
    let bucket = Bucket {
        interval_micros: 500_000,
        burst: 3,
    };
    // Exactly at the rate: never refused.
    let mut stored = None;
    for i in 0..100u64 {
        let (admission, next) = gcra(stored, 1_000_000_000 + i * 500_000, bucket);
        assert_eq!(admission, Admission::Allowed, "event {i}");
        stored = next.map(|(tat, _)| tat);
    }
    // All at once: the burst, then a wait of one interval.
    let (now, mut stored) = (5_000_000_000u64, None);
    for _ in 0..3 {
        let (admission, next) = gcra(stored, now, bucket);
        assert_eq!(admission, Admission::Allowed);
        stored = next.map(|(tat, _)| tat);
    }
    let (refused, none) = gcra(stored, now, bucket);
    assert_eq!(
        refused,
        Admission::Refused {
            retry_after: std::time::Duration::from_micros(500_000)
        }
    );
    assert_eq!(none, None);
    assert_eq!(gcra(stored, now + 500_000, bucket).0, Admission::Allowed);
}

/// Stored data is addressed by these names: a change here would orphan
/// every list and claim already stored.
#[test]
fn collection_and_claim_names_are_stable() {
    let id = uuid::Uuid::from_u128(7);
    let s = id.to_string();
    let names = [
        (Collection::Organizations, "orgs".to_owned()),
        (
            Collection::Org {
                org: id,
                kind: Kind::Deployment,
            },
            format!("org/{s}/dep"),
        ),
        (Collection::Settings, "settings".to_owned()),
        (
            Collection::ConfigurationVersions {
                org: id,
                configuration: id,
            },
            format!("cfg/{s}/versions"),
        ),
        (
            Collection::DeploymentSessions {
                org: id,
                deployment: id,
            },
            format!("route/deployment/{s}/sessions"),
        ),
        (Collection::Visitors(id), format!("route/org/{s}/visitors")),
        (
            Collection::Waiting { org: id, queue: id },
            format!("route/queue/{s}/waiting"),
        ),
        (Collection::Offered(id), format!("route/org/{s}/offered")),
        (
            Collection::Connected(id),
            format!("route/org/{s}/connected"),
        ),
        (Collection::Ended(id), format!("route/org/{s}/ended")),
        (
            Collection::OnlineAgents(id),
            format!("route/org/{s}/agents/online"),
        ),
        (
            Collection::OfflineAgents(id),
            format!("route/org/{s}/agents/offline"),
        ),
        (
            Collection::PushDevices {
                org: id,
                deployment: id,
            },
            format!("push/{s}"),
        ),
        (Collection::PushOutbox(id), format!("push-outbox/{s}")),
        (Collection::Audit(id), format!("audit/org/{s}")),
        (Collection::Attachments(id), format!("attach/org/{s}")),
        (
            Collection::Retired(Retired::Offered),
            "route/offered".to_owned(),
        ),
        (
            Collection::Retired(Retired::OnlineAgents),
            "route/agents/online".to_owned(),
        ),
        (
            Collection::Retired(Retired::PushOutbox),
            "push-outbox".to_owned(),
        ),
    ];
    for (collection, name) in names {
        assert_eq!(collection.name(), name);
    }
    // The digest of "issuer\nsubject", as members were always claimed.
    assert_eq!(
        Claim::member_identity(id, "https://idp.example", "alice").name(),
        format!("member/{s}/9ac2edb5a830bc9f946a1308498e37c1c24a8ddfea2bb516714ae406cb2b27c0")
    );
}
