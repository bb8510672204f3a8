//! switchboard's record of one attachment: who may upload it, what was
//! declared and then verified, and where it stands (waiting for its bytes,
//! uploaded, sent in a conversation).
//!
//! Records are of the engine's setting kind under `attachment/<ref>`,
//! listed per organization (`Collection::Attachments`), read by key below
//! the typed `Record` machinery, like push devices: they belong to a
//! session or an agent rather than to an organization's admin records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::{Collection, Commit, Expect, Home, Kind, Put, RecordKey};
use crate::store::types::OrgId;
use crate::store::{Store, StoreError, StoreResult};

/// Who uploads an attachment, and so who may send, fetch and delete it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Owner {
    /// A visitor's guest session of a deployment.
    Session { deployment: Uuid, session: Uuid },
    /// A staff member (an agent), by member id.
    Agent { member: Uuid },
}

impl Owner {
    /// The namespace an owner's attachment ids live in: two sessions that
    /// pick the same id get two attachments.
    fn namespace(self) -> Uuid {
        match self {
            Owner::Session { session, .. } => session,
            Owner::Agent { member } => member,
        }
    }

    /// The record an owner's attachment id names: a digest of both, so
    /// the same id always names the same record.
    pub fn reference(self, client_id: &str) -> Uuid {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        digest.update(self.namespace().as_bytes());
        digest.update(client_id.as_bytes());
        let digest = digest.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum State {
    /// An upload URL was handed out; the bytes have not arrived.
    Pending,
    /// The bytes arrived and passed the checks; no message carries it yet.
    Uploaded,
    /// A message of `conversation` carries it.
    #[serde(rename_all = "camelCase")]
    Sent { conversation: Uuid },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    pub reference: Uuid,
    pub org_id: OrgId,
    pub owner: Owner,
    /// The uploader's id for it (the SDK's `attachmentId`).
    pub client_id: String,
    pub filename: String,
    /// Declared, then verified against the bytes.
    pub mime: String,
    /// Declared, then the bytes' actual size. Counts against the quota
    /// from the moment the URL is handed out.
    pub size: u64,
    pub state: State,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub uploaded_at: Option<DateTime<Utc>>,
    /// A server-made preview exists (`<key>.thumb`, a PNG).
    #[serde(default)]
    pub thumbnail: bool,
    /// The preview's size in bytes; counts against the quota with `size`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub thumbnail_size: u64,
    #[serde(skip)]
    pub version: u64,
}

impl AttachmentRecord {
    /// Kept in its organization's home, with the organization's list.
    pub fn key_of(org: OrgId, reference: Uuid) -> RecordKey {
        RecordKey::new(
            Home::Org(org.0),
            Kind::Setting,
            format!("attachment/{reference}"),
        )
    }

    /// Where its bytes are: `<org>/<ref>`.
    pub fn blob_key(&self) -> String {
        format!("{}/{}", self.org_id, self.reference)
    }

    /// Where its preview is, when it has one: `<org>/<ref>.thumb`.
    pub fn thumbnail_key(&self) -> String {
        format!("{}/{}.thumb", self.org_id, self.reference)
    }

    /// What it takes of the organization's quota: the file (declared
    /// until it arrives) and its preview.
    pub fn stored_bytes(&self) -> u64 {
        self.size.saturating_add(self.thumbnail_size)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn decode(stored: crate::engine::StoredRecord) -> StoreResult<AttachmentRecord> {
    let mut record: AttachmentRecord =
        serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt {
            key: stored.key,
            message: e.to_string(),
        })?;
    record.version = stored.version;
    Ok(record)
}

/// The records, on the store.
pub(super) async fn get(
    store: &Store,
    org: OrgId,
    reference: Uuid,
) -> StoreResult<Option<AttachmentRecord>> {
    store
        .raw_get(&AttachmentRecord::key_of(org, reference))
        .await?
        .map(decode)
        .transpose()
}

/// Writes `record`: new when `read` is `None`, else over the version read.
pub(super) async fn put(
    store: &Store,
    record: &AttachmentRecord,
    read: Option<u64>,
) -> StoreResult<()> {
    let put = Put {
        key: AttachmentRecord::key_of(record.org_id, record.reference),
        expect: read.map_or(Expect::Absent, Expect::Version),
        body: crate::store::encode(record)?,
        collection: Collection::Attachments(record.org_id.0),
        order: record.created_at.timestamp_millis(),
        refs: Vec::new(),
        unique: Vec::new(),
    };
    store.commit(Commit::new().put(put)).await
}

pub(super) async fn delete(store: &Store, record: &AttachmentRecord) -> StoreResult<()> {
    match store
        .commit(Commit::new().delete(
            AttachmentRecord::key_of(record.org_id, record.reference),
            Expect::Any,
        ))
        .await
    {
        Err(StoreError::NotFound) => Ok(()),
        other => other,
    }
}

/// Every attachment of an organization, oldest first.
pub(super) async fn list_org(store: &Store, org: OrgId) -> StoreResult<Vec<AttachmentRecord>> {
    const PAGE: u64 = 200;
    let collection = Collection::Attachments(org.0);
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.engine().list(&collection, offset, PAGE).await?;
        let count = page.records.len() as u64;
        for stored in page.records {
            all.push(decode(stored)?);
        }
        if count < PAGE {
            return Ok(all);
        }
        offset += count;
    }
}
