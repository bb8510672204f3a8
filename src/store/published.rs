//! What visitors are served: the configuration versions a deployment
//! publishes, and whether a deployment takes guests at all.
//!
//! Versions are written once at publish time and never change, so they are
//! read by key below the typed [`Record`](super::Record) machinery.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use uuid::Uuid;

use super::records::{ConfigurationContent, ConfigurationVersion, Deployment};
use super::types::{DeploymentStatus, OrgId};
use super::{Listing, PageRequest, Store, StoreError, StoreResult};
use crate::engine::StoredRecord;

/// An active deployment with the published configuration it runs. Every
/// guest socket holds one for its life, so equal ones are shared (see
/// [`Shared`]) rather than held once per socket.
#[derive(Debug)]
pub struct Admitted {
    pub deployment: Arc<Deployment>,
    pub content: Arc<ConfigurationContent>,
    pub version: String,
}

/// The admissions live sockets hold, by what makes them equal: a
/// deployment's id and record version, a configuration's id and published
/// version (which never changes once published). Storage is still read on
/// every admission; only the copy is shared. Entries go when no socket holds
/// them any more.
#[derive(Debug, Default)]
pub(super) struct Shared {
    deployments: HashMap<(Uuid, u64), Weak<Deployment>>,
    contents: HashMap<(Uuid, String), Weak<ConfigurationContent>>,
}

impl Shared {
    fn intern<K: std::hash::Hash + Eq, T>(
        map: &mut HashMap<K, Weak<T>>,
        key: K,
        value: T,
    ) -> Arc<T> {
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        map.retain(|_, held| held.strong_count() > 0);
        let value = Arc::new(value);
        map.insert(key, Arc::downgrade(&value));
        value
    }
}

/// Why a deployment takes no guests.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Unknown, inactive, or without a readable published configuration.
    #[error("unknown or inactive deployment")]
    NoDeployment,
    /// Messaging is switched off in the configuration.
    #[error("messaging is disabled for this deployment")]
    Disabled,
    /// Storage did not answer, or held something unreadable.
    #[error(transparent)]
    Store(StoreError),
}

impl Store {
    /// A published version of configuration `id`, within organization `org`:
    /// a version of another organization is [`StoreError::NotFound`].
    pub async fn published_version(
        &self,
        org: OrgId,
        id: Uuid,
        version: u32,
    ) -> StoreResult<ConfigurationVersion> {
        let stored = self
            .raw_get(&ConfigurationVersion::key_of(org, id, version))
            .await?
            .ok_or(StoreError::NotFound)?;
        let found = decode_version(stored)?;
        if found.org_id != org {
            return Err(StoreError::NotFound);
        }
        Ok(found)
    }

    /// One page of configuration `id`'s published versions, oldest first.
    pub async fn published_versions(
        &self,
        org: OrgId,
        id: Uuid,
        page: PageRequest,
    ) -> StoreResult<Listing<ConfigurationVersion>> {
        let collection = ConfigurationVersion::collection_of(org, id);
        let found = self
            .engine
            .list(&collection, page.offset(), page.size)
            .await?;
        Ok(Listing {
            total: found.total,
            entities: found
                .records
                .into_iter()
                .map(decode_version)
                .collect::<StoreResult<_>>()?,
        })
    }

    /// An active deployment and the published version it runs. Unknown,
    /// inactive and unpublished deployments are all [`StoreError::NotFound`]:
    /// the public surface does not say which.
    pub async fn active_deployment(
        &self,
        id: Uuid,
    ) -> StoreResult<(Deployment, ConfigurationVersion)> {
        let deployment = self
            .locate::<Deployment>(id)
            .await?
            .filter(|d| d.status == DeploymentStatus::Active)
            .ok_or(StoreError::NotFound)?;
        let version = deployment
            .configuration_version()
            .ok_or(StoreError::NotFound)?;
        let published = self
            .published_version(deployment.org_id, deployment.configuration.id, version)
            .await?;
        Ok((deployment, published))
    }

    /// An active deployment whose published configuration takes guests.
    pub async fn admit_deployment(&self, id: Uuid) -> Result<Admitted, Refused> {
        let (deployment, published) = self.active_deployment(id).await.map_err(|e| match e {
            StoreError::NotFound => Refused::NoDeployment,
            e => Refused::Store(e),
        })?;
        let content = published.content;
        if !content.messenger.enabled || !content.messenger.apps.conversations.enabled {
            return Err(Refused::Disabled);
        }
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let content = Shared::intern(
            &mut shared.contents,
            (published.id, published.version.clone()),
            content,
        );
        let deployment = Shared::intern(
            &mut shared.deployments,
            (deployment.meta.id, deployment.meta.version),
            deployment,
        );
        Ok(Admitted {
            deployment,
            content,
            version: published.version,
        })
    }
}

fn decode_version(stored: StoredRecord) -> StoreResult<ConfigurationVersion> {
    serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt {
        key: stored.key,
        message: e.to_string(),
    })
}
