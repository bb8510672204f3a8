//! The limiter: the node's current [`Limits`], each organization's rates,
//! and the token buckets, kept in the engine so that every node counts
//! against one budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use uuid::Uuid;

use super::{Limits, OrgRates, Rate};
use crate::engine::{Admission, EngineResult, Space};
use crate::store::Store;
use crate::store::records::Organization;
use crate::store::types::OrgId;

/// How long a node trusts what it read of an organization's limits: a
/// change made on another node applies here within this time (on the node
/// that made it, at once).
const ORG_CACHE_TTL: Duration = Duration::from_secs(5);

/// What is counted, and so the name of its bucket. Names are spelled here
/// from parsed values (UUIDs, addresses), never from raw input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    GuestMessages {
        session: Uuid,
    },
    AgentMessages {
        agent: Uuid,
    },
    OrgAgentMessages {
        org: Uuid,
    },
    TokenRequests {
        group: &'static str,
        address: IpAddr,
        deployment: Option<Uuid>,
    },
    PushRequests {
        address: IpAddr,
        deployment: Uuid,
    },
    StaffLogins {
        address: IpAddr,
    },
    SessionsPerAddress {
        address: IpAddr,
        deployment: Uuid,
    },
    SessionsPerDeployment {
        deployment: Uuid,
    },
    ConversationsPerAddress {
        address: IpAddr,
        deployment: Uuid,
    },
    ConversationsPerDeployment {
        deployment: Uuid,
    },
}

impl Key {
    fn id(&self) -> String {
        match self {
            Key::GuestMessages { session } => format!("gm:{session}"),
            Key::AgentMessages { agent } => format!("am:{agent}"),
            Key::OrgAgentMessages { org } => format!("om:{org}"),
            Key::TokenRequests {
                group,
                address,
                deployment,
            } => {
                let deployment = deployment.map_or_else(|| "-".to_owned(), |d| d.to_string());
                format!("tok:{group}:{deployment}:{}", address_key(*address))
            }
            Key::PushRequests {
                address,
                deployment,
            } => format!("push:{deployment}:{}", address_key(*address)),
            Key::StaffLogins { address } => format!("staff:{}", address_key(*address)),
            Key::SessionsPerAddress {
                address,
                deployment,
            } => format!("sa:{deployment}:{}", address_key(*address)),
            Key::SessionsPerDeployment { deployment } => format!("sd:{deployment}"),
            Key::ConversationsPerAddress {
                address,
                deployment,
            } => format!("ca:{deployment}:{}", address_key(*address)),
            Key::ConversationsPerDeployment { deployment } => format!("cd:{deployment}"),
        }
    }
}

/// An address as per-address limits count it: IPv4 as is, IPv6 by its /64,
/// the block one subscriber is given, so a client cannot step through the
/// addresses of its own network to get a fresh budget each time.
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
    }
}

/// A refusal: the client may try again after this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl Refused {
    /// Whole seconds, at least one, for `Retry-After` and `retryAfter`.
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after
            .as_micros()
            .div_ceil(1_000_000)
            .try_into()
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// The node's limits and buckets. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Limiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Swapped whole by [`Limiter::replace`]; readers never wait.
    limits: ArcSwap<Limits>,
    store: Store,
    /// Each organization's rates as last read, and when.
    orgs: Mutex<HashMap<Uuid, (Instant, OrgRates)>>,
}

impl Limiter {
    pub fn new(store: Store, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits: ArcSwap::from_pointee(limits),
                store,
                orgs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The limits in force now.
    pub fn current(&self) -> Arc<Limits> {
        self.inner.limits.load_full()
    }

    /// Puts new limits in force (a configuration reload): every request
    /// from now on sees them; buckets keep what they counted.
    pub fn replace(&self, limits: Limits) {
        self.inner.limits.store(Arc::new(limits));
        self.orgs().clear();
    }

    /// An organization's rates: the node's defaults with its overrides.
    /// When its record cannot be read, the defaults (a limit must not turn
    /// into an outage).
    pub async fn org(&self, org: OrgId) -> OrgRates {
        let now = Instant::now();
        if let Some((read, rates)) = self.orgs().get(&org.0)
            && now.duration_since(*read) < ORG_CACHE_TTL
        {
            return *rates;
        }
        let base = self.current().org;
        match self.inner.store.find::<Organization>(org, org.0).await {
            Ok(found) => {
                let rates = found.map_or(base, |o| o.limits.apply(&base));
                self.orgs().insert(org.0, (now, rates));
                rates
            }
            Err(e) => {
                tracing::warn!(org = %org.0, error = %e, "cannot read an organization's limits; using the node's");
                base
            }
        }
    }

    /// Forgets what this node read of an organization's limits (they were
    /// just changed here).
    pub fn forget(&self, org: OrgId) {
        self.orgs().remove(&org.0);
    }

    /// Takes one event from `key`'s bucket at `rate`; refuses when it is
    /// empty. When storage cannot count, lets the event through: a limit is
    /// a guard, not a gate, and whatever the event does next fails on its
    /// own if storage is gone.
    ///
    /// A bucket is kept per rate: when an operator changes a rate, the
    /// counting starts afresh at the new one, instead of a client staying
    /// refused for as long as the old (slower) rate's debt says.
    pub async fn admit(&self, key: Key, rate: Rate) -> Result<(), Refused> {
        let (id, bucket) = Self::bucket_of(&key, rate);
        let engine = self.inner.store.engine();
        Self::decided(engine.throttle(Space::RateLimit, &id, bucket).await)
    }

    /// [`Limiter::admit`] on several keys of one organization at once: one
    /// event from each, or from none when any refuses (answering the index
    /// of the key with the longest wait). One engine step, where admitting
    /// them one by one takes one each.
    pub async fn admit_all(
        &self,
        org: OrgId,
        keys: &[(Key, Rate)],
    ) -> Result<(), (usize, Refused)> {
        let buckets: Vec<_> = keys
            .iter()
            .map(|(key, rate)| Self::bucket_of(key, *rate))
            .collect();
        let meters: Vec<_> = buckets
            .iter()
            .map(|(id, bucket)| crate::engine::Meter {
                id,
                bucket: *bucket,
            })
            .collect();
        let engine = self.inner.store.engine();
        let decided = engine
            .throttle_all(Space::RateLimit, crate::engine::Home::Org(org.0), &meters)
            .await;
        let (index, admission) = match decided {
            Ok(Some((index, refused))) => (index, Ok(refused)),
            Ok(None) => (0, Ok(Admission::Allowed)),
            Err(e) => (0, Err(e)),
        };
        Self::decided(admission).map_err(|refused| (index, refused))
    }

    /// [`Limiter::admit`] on the bucket kept beside `log` (see
    /// [`crate::engine::Meter`]): the one a metered append to `log` takes
    /// from.
    pub async fn admit_beside(&self, log: Uuid, key: Key, rate: Rate) -> Result<(), Refused> {
        let (id, bucket) = Self::bucket_of(&key, rate);
        let engine = self.inner.store.engine();
        let meter = crate::engine::Meter { id: &id, bucket };
        Self::decided(engine.throttle_beside(log, meter).await)
    }

    /// The id and bucket `key` counts in at `rate`, for a metered append.
    pub fn bucket_of(key: &Key, rate: Rate) -> (String, crate::engine::Bucket) {
        let bucket = rate.bucket();
        let id = format!("{}:{}x{}", key.id(), bucket.interval_micros, bucket.burst);
        (id, bucket)
    }

    fn decided(admission: EngineResult<Admission>) -> Result<(), Refused> {
        match admission {
            Ok(Admission::Allowed) => Ok(()),
            Ok(Admission::Refused { retry_after }) => Err(Refused { retry_after }),
            Err(e) => {
                tracing::warn!(error = %e, "rate limit unavailable; letting the request through");
                Ok(())
            }
        }
    }

    fn orgs(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, OrgRates)>> {
        self.inner
            .orgs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn retry_after_rounds_up_to_a_second() {
        let r = Refused {
            retry_after: Duration::from_millis(1),
        };
        assert_eq!(r.retry_after_seconds(), 1);
        let r = Refused {
            retry_after: Duration::from_millis(2001),
        };
        assert_eq!(r.retry_after_seconds(), 3);
    }
}
