//! Moving records written before homes existed into their organizations'
//! homes (schema version 2, see `store::migrations`).
//!
//! Until then every record lived under the installation's hash tag. Each
//! one that belongs to an organization (its body names an `orgId`) is copied
//! with its back references, claims and collection entry under the
//! organization's tag, then removed from the old place. The three lists
//! that used to span organizations (offers, online agents, the push outbox)
//! become one list per organization on the way.
//!
//! Nodes may run this at once. A record is copied only while its new place
//! is empty, so a copy can never overwrite what a node that finished first
//! has written since; everything else is a set union or a removal, which
//! repeat harmlessly. On a cluster the keys of one home share a slot, so
//! the old ones are all on the master of the installation's slot, which is
//! where the scan runs.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::keys::{self, field};
use super::{RedisEngine, unavailable};
use crate::engine::homes::{job_conversation, org_in, renamed, with_org};
use crate::engine::{Collection, EngineResult, Home, Kind, RecordKey};

/// Keys the scan asks Redis for at a time.
const SCAN_COUNT: usize = 500;

impl RedisEngine {
    /// Moves every organization's records out of the installation's home;
    /// answers how many moved.
    pub async fn move_to_homes(&self) -> EngineResult<u64> {
        let installation = keys::home(&self.prefix, Home::Installation);
        // Push jobs first: a job learns its organization from its
        // conversation, which must still be where the job looks.
        let jobs = format!("{installation}r:{}:pushjob/*", Kind::Setting.as_str());
        let moved = self.move_matching(&installation, &jobs).await?;
        let all = format!("{installation}r:*");
        Ok(moved + self.move_matching(&installation, &all).await?)
    }

    async fn move_matching(&self, installation: &str, pattern: &str) -> EngineResult<u64> {
        let records = format!("{installation}r:");
        let mut moved = 0;
        let mut cursor = 0u64;
        loop {
            let (next, found) = self
                .conn
                .scan_slot_of(installation, cursor, pattern, SCAN_COUNT)
                .await
                .map_err(unavailable)?;
            for name in found {
                if let Some(encoded) = name.strip_prefix(&records)
                    && self.move_one(installation, encoded).await?
                {
                    moved += 1;
                }
            }
            if next == 0 {
                return Ok(moved);
            }
            cursor = next;
        }
    }

    /// Moves the record `encoded` if it belongs to an organization.
    async fn move_one(&self, installation: &str, encoded: &str) -> EngineResult<bool> {
        let Some(key) = RecordKey::decode(Home::Installation, encoded) else {
            return Ok(false);
        };
        let old = format!("{installation}r:{encoded}");
        let mut conn = self.conn.clone();
        let mut fields: HashMap<String, Vec<u8>> = conn.hgetall(&old).await.map_err(unavailable)?;
        let Some(body) = fields.get(field::BODY).cloned() else {
            return Ok(false);
        };
        let Some((org, body)) = self.owner(&key, &body).await? else {
            return Ok(false);
        };
        fields.insert(field::BODY.to_owned(), body);
        let home = keys::home(&self.prefix, Home::Org(org));
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(|v| String::from_utf8(v.clone()).ok())
                .unwrap_or_default()
        };
        let old_collection = text(field::COLLECTION);
        let collection = if key.id.starts_with("first-admin:") {
            Collection::Org {
                org,
                kind: Kind::Setting,
            }
            .name()
        } else {
            renamed(&old_collection, org)
        };
        let order = text(field::ORDER);
        let claims: Vec<String> = serde_json::from_str(&text(field::UNIQUE)).unwrap_or_default();
        fields.insert(
            field::COLLECTION.to_owned(),
            collection.clone().into_bytes(),
        );

        let new = format!("{home}r:{encoded}");
        let exists: bool = conn.exists(&new).await.map_err(unavailable)?;
        if !exists {
            let pairs: Vec<(String, Vec<u8>)> = fields.into_iter().collect();
            let _: () = conn
                .hset_multiple(&new, &pairs)
                .await
                .map_err(unavailable)?;
            let _: () = conn
                .zadd(format!("{home}c:{collection}"), &order, 0)
                .await
                .map_err(unavailable)?;
            for claim in &claims {
                let _: () = conn
                    .set(format!("{home}u:{claim}"), encoded)
                    .await
                    .map_err(unavailable)?;
            }
        }
        let referrers: Vec<String> = conn
            .smembers(format!("{installation}by:{encoded}"))
            .await
            .map_err(unavailable)?;
        if !referrers.is_empty() {
            let _: () = conn
                .sadd(format!("{home}by:{encoded}"), &referrers)
                .await
                .map_err(unavailable)?;
        }
        let _: () = conn
            .zrem(format!("{installation}c:{old_collection}"), &order)
            .await
            .map_err(unavailable)?;
        for claim in &claims {
            let holder: Option<String> = conn
                .get(format!("{installation}u:{claim}"))
                .await
                .map_err(unavailable)?;
            if holder.as_deref() == Some(encoded) {
                let _: () = conn
                    .del(format!("{installation}u:{claim}"))
                    .await
                    .map_err(unavailable)?;
            }
        }
        let _: () = conn
            .del(&[old, format!("{installation}by:{encoded}")])
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    /// The organization record `key` belongs to and its body as it is
    /// stored from now on; `None` for what stays installation-wide.
    async fn owner(
        &self,
        key: &RecordKey,
        body: &[u8],
    ) -> EngineResult<Option<(uuid::Uuid, Vec<u8>)>> {
        let unchanged = |org: uuid::Uuid| (org, body.to_vec());
        Ok(match key.kind {
            // An organization is its own home.
            Kind::Organization => key.id.parse().ok().map(unchanged),
            // Settings stay installation-wide, but for push devices and
            // push jobs.
            Kind::Setting if key.id.starts_with("push/") => org_in(body).map(unchanged),
            // A first-run mark names its organization in its id.
            Kind::Setting if key.id.starts_with("first-admin:") => key
                .id
                .strip_prefix("first-admin:")
                .and_then(|org| org.parse().ok())
                .map(unchanged),
            Kind::Setting if key.id.starts_with("pushjob/") => self
                .job_org(body)
                .await?
                .map(|org| (org, with_org(body, org))),
            Kind::Setting => None,
            _ => org_in(body).map(unchanged),
        })
    }

    /// A push job's organization: its conversation's, which must still be
    /// where the job looks (jobs move first).
    async fn job_org(&self, body: &[u8]) -> EngineResult<Option<uuid::Uuid>> {
        let Some(conversation) = job_conversation(body) else {
            return Ok(None);
        };
        let installation = keys::home(&self.prefix, Home::Installation);
        let found: Option<Vec<u8>> = self
            .conn
            .clone()
            .hget(
                format!(
                    "{installation}r:{}:{conversation}",
                    Kind::Conversation.as_str()
                ),
                field::BODY,
            )
            .await
            .map_err(unavailable)?;
        Ok(found.as_deref().and_then(org_in))
    }
}
