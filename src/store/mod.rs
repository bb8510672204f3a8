//! Admin records on top of the engine: typed, versioned, per organization.
//!
//! Every record belongs to an organization, and every read through
//! [`Store::get`] checks it: a record of another organization is reported as
//! missing, so ids do not leak across tenants. References between records
//! (a deployment's queue, say) are checked the same way before the engine
//! makes them binding.

pub mod audit;
mod directory;
pub mod migrations;
mod published;
pub mod push_devices;
pub mod records;
pub mod types;

pub use published::{Admitted, Refused};

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::engine::{
    Claim, Collection, Commit, Engine, EngineError, Expect, Home, Kind, Put, RecordKey,
    StoredRecord,
};
use records::{Meta, Organization};
use types::OrgId;

/// The bookkeeping half of [`Record`] for a record with `meta` and
/// `org_id` fields: what nearly every record has.
macro_rules! record_basics {
    () => {
        fn meta(&self) -> &$crate::store::records::Meta {
            &self.meta
        }
        fn meta_mut(&mut self) -> &mut $crate::store::records::Meta {
            &mut self.meta
        }
        fn org(&self) -> $crate::store::types::OrgId {
            self.org_id
        }
    };
}
pub(crate) use record_basics;

/// A typed record the store can keep.
pub trait Record: Serialize + DeserializeOwned + Send + Sync {
    const KIND: Kind;

    /// Whether records of this kind are found by id alone
    /// ([`Store::locate`]): the store then keeps where each one lives in
    /// the installation's directory.
    const LOCATED: bool = false;

    /// Where the records of `org` live: the organization's own home, so
    /// everything one change touches shares a Redis Cluster slot.
    fn home_for(org: OrgId) -> Home
    where
        Self: Sized,
    {
        Home::Org(org.0)
    }

    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;
    fn org(&self) -> OrgId;

    /// Records this one uses; they must exist in the same organization, and
    /// cannot be deleted while this one names them.
    fn refs(&self) -> Vec<RecordKey> {
        Vec::new()
    }

    /// Claims at most one record may hold.
    fn claims(&self) -> Vec<Claim> {
        Vec::new()
    }

    /// The list this record appears in.
    fn collection(&self) -> Collection {
        collection_of(Self::KIND, self.org())
    }

    /// The record's place in its collection; creation time by default.
    fn order(&self) -> i64 {
        self.meta().date_created.timestamp_millis()
    }

    fn key(&self) -> RecordKey
    where
        Self: Sized,
    {
        RecordKey::new(
            Self::home_for(self.org()),
            Self::KIND,
            self.meta().id.to_string(),
        )
    }
}

/// The list of one organization's records of one kind.
pub fn collection_of(kind: Kind, org: OrgId) -> Collection {
    Collection::Org { org: org.0, kind }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The record changed since the caller read it.
    #[error("version {expected} is stale; the record is at version {actual}")]
    Stale { expected: u64, actual: u64 },
    #[error("{key} is in use by {}", by.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    InUse { key: RecordKey, by: Vec<RecordKey> },
    /// A referenced record does not exist in the caller's organization.
    #[error("{0} does not exist")]
    MissingRef(RecordKey),
    #[error("{0}")]
    Duplicate(String),
    /// Two writers raced on creation or another precondition.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored body did not parse: a bug or a foreign writer, never input.
    #[error("stored record {key} is corrupt: {message}")]
    Corrupt { key: RecordKey, message: String },
}

impl From<EngineError> for StoreError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Conflict {
                key,
                expected: Expect::Version(expected),
                actual: Some(actual),
            } => {
                let _ = key;
                StoreError::Stale { expected, actual }
            }
            EngineError::Conflict { actual: None, .. } => StoreError::NotFound,
            EngineError::Conflict { key, .. } => {
                StoreError::Conflict(format!("{key} already exists"))
            }
            EngineError::MissingRef(key) => StoreError::MissingRef(key),
            EngineError::InUse { key, by } => StoreError::InUse { key, by },
            EngineError::Duplicate { claim, holder } => {
                StoreError::Duplicate(format!("{holder} already holds {claim}"))
            }
            EngineError::InvalidCommit(m) | EngineError::Unavailable(m) => {
                StoreError::Unavailable(m)
            }
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Paging of a list request: 1-based page number and a page size.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub number: u64,
    pub size: u64,
}

impl PageRequest {
    /// How many entries come before this page.
    pub fn offset(&self) -> u64 {
        self.number.saturating_sub(1).saturating_mul(self.size)
    }
}

#[derive(Debug)]
pub struct Listing<T> {
    pub total: u64,
    pub entities: Vec<T>,
}

/// Typed record access. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
    /// Admissions shared by the guest sockets that hold them.
    shared: std::sync::Arc<std::sync::Mutex<published::Shared>>,
    /// Where located records live.
    directory: directory::Directory,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerOnly {
    org_id: Option<OrgId>,
}

impl Store {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            shared: std::sync::Arc::default(),
            directory: directory::Directory::default(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub async fn ping(&self) -> StoreResult<()> {
        Ok(self.engine.ping().await?)
    }

    pub async fn raw_get(&self, key: &RecordKey) -> StoreResult<Option<StoredRecord>> {
        Ok(self.engine.get(key).await?)
    }

    pub async fn commit(&self, commit: Commit) -> StoreResult<()> {
        Ok(self.engine.commit(commit).await?)
    }

    /// A record of the caller's organization, or [`StoreError::NotFound`].
    pub async fn get<T: Record>(&self, org: OrgId, id: Uuid) -> StoreResult<T> {
        self.find::<T>(org, id).await?.ok_or(StoreError::NotFound)
    }

    /// A record of `org`, if it exists. A record of another organization is
    /// not found: it does not even live where this one looks.
    pub async fn find<T: Record>(&self, org: OrgId, id: Uuid) -> StoreResult<Option<T>> {
        let key = RecordKey::new(T::home_for(org), T::KIND, id.to_string());
        let found = self.raw_get(&key).await?.map(decode::<T>).transpose()?;
        Ok(found.filter(|record| record.org() == org))
    }

    /// A record by id alone, for the public surface that knows no
    /// organization (a deployment's `config.json`, a client's credentials):
    /// the installation's directory says where it lives. Only for kinds
    /// that keep one ([`Record::LOCATED`]).
    pub async fn locate<T: Record>(&self, id: Uuid) -> StoreResult<Option<T>> {
        debug_assert!(T::LOCATED, "{:?} records are not in the directory", T::KIND);
        match self.directory.org_of(&self.engine, T::KIND, id).await? {
            Some(org) => self.find::<T>(org, id).await,
            None => Ok(None),
        }
    }

    /// One page of the installation's organizations, oldest first.
    pub async fn organizations(&self, page: PageRequest) -> StoreResult<Listing<Organization>> {
        let entries = self
            .engine
            .list(&Collection::Organizations, page.offset(), page.size)
            .await?;
        let keys = entries
            .records
            .iter()
            .map(|entry| {
                let org = directory::org_of_entry(entry)?;
                Ok(Organization::key_of(org, org.0))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // An entry whose organization is gone (or not yet written) leads
        // nowhere and is left out.
        let entities = self
            .engine
            .get_many(&keys)
            .await?
            .into_iter()
            .flatten()
            .map(decode::<Organization>)
            .collect::<StoreResult<_>>()?;
        Ok(Listing {
            total: entries.total,
            entities,
        })
    }

    /// Every organization, read a page at a time (the sweeps walk each
    /// one's lists).
    pub async fn all_organizations(&self) -> StoreResult<Vec<Organization>> {
        const PAGE: u64 = 100;
        let mut all = Vec::new();
        for number in 1.. {
            let listing = self
                .organizations(PageRequest { number, size: PAGE })
                .await?;
            all.extend(listing.entities);
            if number * PAGE >= listing.total {
                break;
            }
        }
        Ok(all)
    }

    /// The record holding a unique claim.
    pub async fn lookup<T: Record>(&self, claim: &Claim) -> StoreResult<Option<T>> {
        let found = self.engine.lookup(claim).await?;
        found
            .filter(|r| r.key.kind == T::KIND)
            .map(decode::<T>)
            .transpose()
    }

    /// One page of a collection.
    pub async fn list<T: Record>(
        &self,
        collection: &Collection,
        page: PageRequest,
    ) -> StoreResult<Listing<T>> {
        let offset = page.offset();
        let found = self.engine.list(collection, offset, page.size).await?;
        let entities = found
            .records
            .into_iter()
            .map(decode::<T>)
            .collect::<StoreResult<_>>()?;
        Ok(Listing {
            total: found.total,
            entities,
        })
    }

    /// Every record of a collection, read a page at a time: for the sweeps
    /// and routing scans that must not stop at the first page.
    pub async fn list_all<T: Record>(&self, collection: &Collection) -> StoreResult<Vec<T>> {
        const PAGE: u64 = 100;
        let mut all = Vec::new();
        for number in 1.. {
            let listing = self
                .list::<T>(collection, PageRequest { number, size: PAGE })
                .await?;
            let last = (listing.entities.len() as u64) < PAGE;
            all.extend(listing.entities);
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// Stores a new record at version 1.
    pub async fn create<T: Record>(&self, record: &mut T) -> StoreResult<()> {
        let put = self.prepare(record, Expect::Absent).await?;
        self.enter_directory(record).await?;
        self.commit(Commit::new().put(put)).await?;
        record.meta_mut().version = 1;
        Ok(())
    }

    /// Replaces a record that must still be at `expected`.
    pub async fn update<T: Record>(&self, record: &mut T, expected: u64) -> StoreResult<()> {
        let put = self.prepare(record, Expect::Version(expected)).await?;
        self.commit(Commit::new().put(put)).await?;
        record.meta_mut().version = expected + 1;
        Ok(())
    }

    /// Removes a record, unless another one uses it or it changed since read.
    pub async fn delete<T: Record>(&self, record: &T) -> StoreResult<()> {
        self.commit(Commit::new().delete(record.key(), Expect::Version(record.meta().version)))
            .await?;
        self.leave_directory(record).await
    }

    /// Lists a record about to be created in the directory, if its kind is
    /// found by id alone ([`Record::LOCATED`]). Before the record exists,
    /// so nothing that exists is ever missing from the directory; a
    /// creation that then fails leaves an entry that leads nowhere, which
    /// readers take as absent.
    pub async fn enter_directory<T: Record>(&self, record: &T) -> StoreResult<()> {
        if T::LOCATED {
            self.directory
                .enter(
                    &self.engine,
                    T::KIND,
                    record.meta().id,
                    record.org(),
                    record.order(),
                )
                .await?;
        }
        Ok(())
    }

    /// The write that lists `record` in the directory, to commit with other
    /// installation-wide writes; `None` for kinds that are not listed.
    pub fn directory_put<T: Record>(&self, record: &T) -> StoreResult<Option<Put>> {
        if !T::LOCATED {
            return Ok(None);
        }
        directory::entry(T::KIND, record.meta().id, record.org(), record.order()).map(Some)
    }

    /// Removes a deleted record from the directory (see
    /// [`Store::enter_directory`]).
    pub async fn leave_directory<T: Record>(&self, record: &T) -> StoreResult<()> {
        if T::LOCATED {
            self.directory
                .remove(&self.engine, T::KIND, record.meta().id)
                .await?;
        }
        Ok(())
    }

    /// Builds the engine write for `record`, after checking that everything
    /// it references lives in its organization. The engine re-checks
    /// existence atomically at commit.
    pub async fn prepare<T: Record>(&self, record: &T, expect: Expect) -> StoreResult<Put> {
        self.check_refs(record.org(), &record.refs()).await?;
        put_for(record, expect)
    }

    pub async fn check_refs(&self, org: OrgId, refs: &[RecordKey]) -> StoreResult<()> {
        if refs.is_empty() {
            return Ok(());
        }
        let found = self.engine.get_many(refs).await?;
        for (key, record) in refs.iter().zip(found) {
            let owner = record
                .and_then(|r| serde_json::from_slice::<OwnerOnly>(&r.body).ok())
                .and_then(|o| o.org_id);
            if owner != Some(org) {
                return Err(StoreError::MissingRef(key.clone()));
            }
        }
        Ok(())
    }
}

/// The engine write for `record`, without [`Store::prepare`]'s check of
/// references: for records that reference nothing (routing's runtime
/// records), which can then be staged without a round trip.
pub fn put_for<T: Record>(record: &T, expect: Expect) -> StoreResult<Put> {
    Ok(Put {
        key: record.key(),
        expect,
        body: encode(record)?,
        collection: record.collection(),
        order: record.order(),
        refs: record.refs(),
        unique: record.claims(),
    })
}

/// Serializes a record for storage.
pub fn encode<T: Serialize>(record: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(record)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode record: {e}")))
}

/// Parses a stored record; the engine's version is authoritative.
pub fn decode<T: Record>(stored: StoredRecord) -> StoreResult<T> {
    let mut record: T = serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt {
        key: stored.key.clone(),
        message: e.to_string(),
    })?;
    record.meta_mut().version = stored.version;
    Ok(record)
}
