//! The bus: publish and subscribe, several subscribers, resubscribing,
//! channels kept apart, and the notices appends publish themselves
//! (metered or not).

use super::*;
use switchboard::engine::{Admission, Appended, Bucket, EntryNotice, Meter, Metered};

contract! {
    publish_subscribe_round_trip => publish_subscribe_round_trip_redis, publish_subscribe_round_trip_embedded, publish_subscribe_round_trip_cluster, publish_subscribe_round_trip_sentinel;
    two_subscribers_both_receive => two_subscribers_both_receive_redis, two_subscribers_both_receive_embedded, two_subscribers_both_receive_cluster, two_subscribers_both_receive_sentinel;
    resubscribe_after_drop => resubscribe_after_drop_redis, resubscribe_after_drop_embedded, resubscribe_after_drop_cluster, resubscribe_after_drop_sentinel;
    publish_without_subscriber_is_fine => publish_without_subscriber_is_fine_redis, publish_without_subscriber_is_fine_embedded, publish_without_subscriber_is_fine_cluster, publish_without_subscriber_is_fine_sentinel;
    channels_are_independent => channels_are_independent_redis, channels_are_independent_embedded, channels_are_independent_cluster, channels_are_independent_sentinel;
    appends_announce_their_entries => appends_announce_their_entries_redis, appends_announce_their_entries_embedded, appends_announce_their_entries_cluster, appends_announce_their_entries_sentinel;
    metered_appends_take_from_the_bucket_beside_the_log => metered_appends_take_from_the_bucket_beside_the_log_redis, metered_appends_take_from_the_bucket_beside_the_log_embedded, metered_appends_take_from_the_bucket_beside_the_log_cluster, metered_appends_take_from_the_bucket_beside_the_log_sentinel;
}

/// How long a published message may take to arrive.
const DELIVERY: Duration = Duration::from_secs(5);

/// The next message, which must come within [`DELIVERY`].
async fn next(sub: &mut Subscription) -> BusMessage {
    tokio::time::timeout(DELIVERY, sub.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing on {:?} within {DELIVERY:?}", sub.channel))
        .expect("the subscription ended")
}

fn payload(bytes: &'static [u8]) -> BusMessage {
    BusMessage::Payload(Bytes::from_static(bytes))
}

async fn subscribe(engine: &Engine, channel: &Channel) -> Subscription {
    engine.subscribe(channel.clone()).await.expect("subscribe")
}

async fn publish(engine: &Engine, channel: &Channel, body: &[u8]) {
    engine.publish(channel, body).await.expect("publish");
}

async fn publish_subscribe_round_trip(engine: &Engine) {
    assert!(engine.bus_healthy());
    let channel = Channel::Conversation(Uuid::new_v4());
    let mut sub = subscribe(engine, &channel).await;
    assert_eq!(sub.channel, channel);
    // Right after subscribe returns: the subscription is already live.
    publish(engine, &channel, b"hello").await;
    assert_eq!(next(&mut sub).await, payload(b"hello"));
    publish(engine, &channel, b"\x00\xffbinary").await;
    publish(engine, &channel, b"").await;
    assert_eq!(next(&mut sub).await, payload(b"\x00\xffbinary"));
    assert_eq!(next(&mut sub).await, payload(b""));
}

async fn two_subscribers_both_receive(engine: &Engine) {
    let channel = Channel::Agent(Uuid::new_v4());
    let mut one = subscribe(engine, &channel).await;
    let mut two = subscribe(engine, &channel).await;
    publish(engine, &channel, b"offer").await;
    assert_eq!(next(&mut one).await, payload(b"offer"));
    assert_eq!(next(&mut two).await, payload(b"offer"));
    // One leaving does not unsubscribe the other.
    drop(one);
    publish(engine, &channel, b"still").await;
    assert_eq!(next(&mut two).await, payload(b"still"));
}

async fn resubscribe_after_drop(engine: &Engine) {
    let channel = Channel::Session(Uuid::new_v4());
    let mut sub = subscribe(engine, &channel).await;
    publish(engine, &channel, b"first").await;
    assert_eq!(next(&mut sub).await, payload(b"first"));
    drop(sub);
    publish(engine, &channel, b"nobody hears this").await;
    let mut sub = subscribe(engine, &channel).await;
    publish(engine, &channel, b"second").await;
    // On Redis the node may not have unsubscribed yet when the message
    // before came in, and then hands it to the new subscriber: a late
    // hint is harmless, a lost one is not.
    let mut got = next(&mut sub).await;
    if got == payload(b"nobody hears this") {
        got = next(&mut sub).await;
    }
    assert!(
        got == payload(b"second") || got == BusMessage::Resync,
        "{got:?}"
    );
    // Many rounds in a row: unsubscribing and subscribing stay ordered.
    drop(sub);
    // A `Resync` instead is within the contract: it tells the subscriber
    // that hints may have been lost (a shard's probe or connection was
    // renewed meanwhile, which a busy cluster does) and to read the log.
    for i in 0..20u8 {
        let mut sub = subscribe(engine, &channel).await;
        engine.publish(&channel, &[i]).await.expect("publish");
        let got = next(&mut sub).await;
        assert!(
            got == BusMessage::Payload(Bytes::from(vec![i])) || got == BusMessage::Resync,
            "round {i}: {got:?}"
        );
    }
}

async fn publish_without_subscriber_is_fine(engine: &Engine) {
    let channel = Channel::Queue(Uuid::new_v4());
    publish(engine, &channel, b"into the void").await;
    // A later subscriber does not get what was published before it.
    let mut sub = subscribe(engine, &channel).await;
    publish(engine, &channel, b"now").await;
    assert_eq!(next(&mut sub).await, payload(b"now"));
}

async fn channels_are_independent(engine: &Engine) {
    let id = Uuid::new_v4();
    // Same id, different kinds: different channels.
    let (conv, queue) = (Channel::Conversation(id), Channel::Queue(id));
    let mut sub = subscribe(engine, &conv).await;
    publish(engine, &queue, b"queue").await;
    publish(engine, &conv, b"conv").await;
    // Delivery per channel is in order, so the queue message would have
    // come first had it been delivered here.
    assert_eq!(next(&mut sub).await, payload(b"conv"));
    // A session and a token family with the same id are apart too.
    let (session, family) = (Channel::Session(id), Channel::TokenFamily(id));
    let mut sub = subscribe(engine, &session).await;
    publish(engine, &family, b"family").await;
    publish(engine, &session, b"session").await;
    assert_eq!(next(&mut sub).await, payload(b"session"));
}

/// The entry a notice announces, as (sequence, body).
fn announced(message: &BusMessage) -> (u64, Vec<u8>) {
    let BusMessage::Payload(payload) = message else {
        panic!("expected an entry notice, got {message:?}");
    };
    let entry =
        EntryNotice::parse(payload).unwrap_or_else(|| panic!("not an entry notice: {payload:?}"));
    (entry.seq, entry.body.to_vec())
}

/// Every append announces its entry on the log's channel, in the same step:
/// its sequence and its body as logged; a resend is not announced again.
async fn appends_announce_their_entries(engine: &Engine) {
    let log = Uuid::new_v4();
    let mut sub = subscribe(engine, &Channel::Conversation(log)).await;
    let elsewhere = Channel::Conversation(Uuid::new_v4());
    let mut other = subscribe(engine, &elsewhere).await;
    engine.append(log, b"{\"m\":1}", Some("a")).await.unwrap();
    engine.append(log, b"\n#2\n", None).await.unwrap();
    let resend = engine.append(log, b"{\"m\":1}", Some("a")).await.unwrap();
    assert!(resend.duplicate);
    engine.append(log, b"", None).await.unwrap();
    assert_eq!(announced(&next(&mut sub).await), (1, b"{\"m\":1}".to_vec()));
    assert_eq!(announced(&next(&mut sub).await), (2, b"\n#2\n".to_vec()));
    // The resend made no notice: the next is the third entry.
    assert_eq!(announced(&next(&mut sub).await), (3, Vec::new()));
    // Nothing on another conversation's channel.
    publish(engine, &elsewhere, b"fence").await;
    assert_eq!(next(&mut other).await, payload(b"fence"));
}

/// A metered append takes one event from a bucket kept beside the log; an
/// empty bucket refuses and nothing is appended or announced. The bucket is
/// the one `throttle_beside` takes from, and belongs to its log and id.
async fn metered_appends_take_from_the_bucket_beside_the_log(engine: &Engine) {
    let log = Uuid::new_v4();
    let mut sub = subscribe(engine, &Channel::Conversation(log)).await;
    // Two at once, then one an hour.
    let bucket = Bucket {
        interval_micros: 3_600_000_000,
        burst: 2,
    };
    let meter = Meter { id: "gm:s", bucket };
    let first = engine
        .append_metered(log, b"one", None, meter)
        .await
        .unwrap();
    assert_eq!(
        first,
        Metered::Appended(Appended {
            seq: 1,
            duplicate: false
        })
    );
    assert_eq!(
        engine.throttle_beside(log, meter).await.unwrap(),
        Admission::Allowed
    );
    match engine
        .append_metered(log, b"two", Some("d"), meter)
        .await
        .unwrap()
    {
        Metered::Refused { retry_after } => assert!(retry_after > Duration::from_secs(60)),
        appended => panic!("the third event of a bucket of two was {appended:?}"),
    }
    assert_eq!(engine.last_seq(log).await.unwrap(), 1);
    // Another sender's bucket, and the same id beside another log, are
    // their own.
    let other = Meter {
        id: "gm:t",
        ..meter
    };
    assert!(matches!(
        engine
            .append_metered(log, b"three", None, other)
            .await
            .unwrap(),
        Metered::Appended(Appended { seq: 2, .. })
    ));
    let elsewhere = Uuid::new_v4();
    assert!(matches!(
        engine
            .append_metered(elsewhere, b"x", None, meter)
            .await
            .unwrap(),
        Metered::Appended(Appended { seq: 1, .. })
    ));
    assert_eq!(announced(&next(&mut sub).await), (1, b"one".to_vec()));
    assert_eq!(announced(&next(&mut sub).await), (2, b"three".to_vec()));
}
