//! Admin records on top of the engine: typed, versioned, per organization.
//!
//! Every record belongs to an organization, and every read through
//! [`Store::get`] checks it: a record of another organization is reported as
//! missing, so ids do not leak across tenants. References between records
//! (a deployment's queue, say) are checked the same way before the engine
//! makes them binding.

pub mod audit;
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
    Claim, Collection, Commit, Engine, EngineError, Expect, Kind, Put, RecordKey, StoredRecord,
};
use records::Meta;
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

    fn key(&self) -> RecordKey {
        RecordKey::new(Self::KIND, self.meta().id.to_string())
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
        match self.find::<T>(id).await? {
            Some(record) if record.org() == org => Ok(record),
            _ => Err(StoreError::NotFound),
        }
    }

    /// A record by id alone, for the public surface that knows no
    /// organization (a deployment's `config.json`, a token's client).
    pub async fn find<T: Record>(&self, id: Uuid) -> StoreResult<Option<T>> {
        let key = RecordKey::new(T::KIND, id.to_string());
        self.raw_get(&key).await?.map(decode::<T>).transpose()
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
            .await
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
