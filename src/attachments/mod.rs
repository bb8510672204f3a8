//! Attachments: files visitors and agents send in a conversation.
//!
//! The flow is the Transport SDK's: a client asks for an upload URL
//! (`onAttachment`, checked against the published configuration's
//! `fileUpload.modes`), PUTs the bytes to switchboard's own upload endpoint
//! (`http/attachments.rs`), which checks their size and sniffs their type
//! (`sniff`) before keeping them (`blobs`: the data directory, or an
//! S3-compatible bucket through `s3`), and is told `UploadSuccessEvent` on
//! its socket. A message then names the attachment by its id; the id is
//! resolved against the sender's own uploads and the message carries
//! switchboard's record of the file, never the sender's claims.
//!
//! URLs are capabilities: HMAC-signed with a key derived from the master
//! key, bound to the attachment (and for uploads to its owner), and
//! short-lived. Download URLs are minted whenever a message is shown, so a
//! stored message never holds a usable one.
//!
//! Images get a server-made preview once their bytes are accepted
//! (`thumbnail`: decoded under limits, off the async threads).
//!
//! Layout: `record` (the engine record and its states), `sniff`,
//! `thumbnail`, `blobs`, `s3` (SigV4), and this file (the rules, the URLs,
//! the lifecycle).

mod blobs;
pub mod record;
pub mod s3;
pub mod sniff;
pub mod thumbnail;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use uuid::Uuid;

pub use self::blobs::{BlobError, Blobs};
pub use self::record::{AttachmentRecord, Owner, State};
use crate::config::{Config, MasterKey};
use crate::routing::content::{AttachmentContent, ContentItem, MAX_ATTACHMENT_ID_CHARS};
use crate::store::records::FileUpload;
use crate::store::types::OrgId;
use crate::store::{Store, StoreError};

/// How long an upload URL works.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a download URL works: long enough to read a conversation,
/// short enough that a leaked URL soon stops working.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(60 * 60);
/// Longest file name kept (characters).
pub const MAX_FILENAME_CHARS: usize = 255;
/// Uploads one owner may have waiting for their bytes at once: each
/// request makes a record, so a client cannot make them without bound
/// (the quota bounds their declared sizes, not their number).
pub const MAX_PENDING_PER_OWNER: usize = 20;
/// The largest upload any mode may allow, whatever a configuration says:
/// an upload is held in memory while it is checked.
pub const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// Why an attachment request was refused, with the Genesys error code the
/// Transport SDK maps (`ErrorCode.mapFrom`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error("attachments are not enabled for this deployment")]
    Disabled,
    #[error("files of type {0} are not accepted")]
    TypeNotAllowed(String),
    #[error("{0}")]
    Size(String),
    #[error("{0}")]
    Content(String),
    #[error("the file name {0}")]
    Name(&'static str),
    #[error("attachment id must be 1 to {MAX_ATTACHMENT_ID_CHARS} characters")]
    Id,
    #[error("the organization's attachment storage quota of {quota_mb} MB is used up")]
    Quota { quota_mb: u64 },
    #[error("too many uploads in progress; finish or delete some first")]
    TooMany,
    #[error("attachment not found")]
    NotFound,
    #[error("the upload URL has expired")]
    Expired,
    #[error("attachment has not been uploaded")]
    NotUploaded,
    #[error("attachment was already sent and belongs to its conversation")]
    Sent,
    #[error("attachment storage is unavailable, try again")]
    Unavailable,
}

impl AttachmentError {
    /// The SDK's code: 4000 feature unavailable, 4001 type, 4002 size,
    /// 4003 content, 4004/4005 name, 4008 expired, 4009 not found, 4010 not
    /// uploaded; 503 (which the SDK reports as a server error) when storage
    /// is down.
    pub fn code(&self) -> u16 {
        match self {
            AttachmentError::Disabled => 4000,
            AttachmentError::TypeNotAllowed(_) => 4001,
            AttachmentError::Size(_) | AttachmentError::Quota { .. } => 4002,
            AttachmentError::Content(_) => 4003,
            AttachmentError::Name("is too long") => 4005,
            AttachmentError::Name(_) => 4004,
            AttachmentError::Id => 4020,
            AttachmentError::Expired => 4008,
            AttachmentError::NotFound | AttachmentError::Sent => 4009,
            AttachmentError::NotUploaded => 4010,
            AttachmentError::TooMany => 4029,
            AttachmentError::Unavailable => 503,
        }
    }
}

impl From<StoreError> for AttachmentError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "attachment record unavailable");
        AttachmentError::Unavailable
    }
}

impl From<BlobError> for AttachmentError {
    fn from(e: BlobError) -> Self {
        tracing::warn!(error = %e, "attachment bytes unavailable");
        AttachmentError::Unavailable
    }
}

/// What the uploader declares before sending bytes.
#[derive(Clone, Debug)]
pub struct UploadRequest {
    pub client_id: String,
    pub filename: String,
    pub mime: String,
    /// `None`: undeclared, the mode's maximum is reserved.
    pub size: Option<u64>,
}

/// Where and how to PUT the bytes.
#[derive(Clone, Debug)]
pub struct PresignedUpload {
    pub reference: Uuid,
    pub url: String,
    /// Headers the client sends with the PUT. Never empty: the SDK takes a
    /// URL without headers for a refreshed download URL.
    pub headers: BTreeMap<String, String>,
    /// The record as kept: the file name as stored, the size reserved.
    pub record: AttachmentRecord,
}

/// The node's attachments: rules, URLs, bytes and records.
#[derive(Clone)]
pub struct Attachments {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: attachments are unavailable on this node (Redis without
    /// object storage).
    blobs: Option<Blobs>,
    store: Store,
    url_key: SecretBox<[u8; 32]>,
    /// `<public URL>/api/v1/attachments`.
    base: String,
    quota_bytes: u64,
    orphan_after: Duration,
    /// Previews being made at once ([`thumbnail::MAX_CONCURRENT`]).
    thumbnails: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Attachments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachments")
            .field("blobs", &self.inner.blobs.as_ref().map(Blobs::describe))
            .finish_non_exhaustive()
    }
}

impl Attachments {
    /// Files under the data directory on the embedded engine, the bucket
    /// when one is configured, and nothing on Redis without one.
    pub fn new(config: &Config, master: &MasterKey, store: Store) -> Result<Self, BlobError> {
        let blobs = match (&config.attachments.s3, &config.redis) {
            (Some(s3), _) => Some(Blobs::S3(s3::S3Client::new(s3.clone())?)),
            (None, None) => Some(Blobs::Files(config.data_dir.join("attachments"))),
            (None, Some(_)) => None,
        };
        let base = format!(
            "{}/api/v1/attachments",
            config.public_url.as_str().trim_end_matches('/')
        );
        Ok(Self {
            inner: Arc::new(Inner {
                blobs,
                store,
                url_key: SecretBox::new(Box::new(crate::auth::crypto::derive_key(
                    master,
                    "switchboard/attachment-url/v1",
                ))),
                base,
                quota_bytes: config.attachments.quota_bytes,
                orphan_after: config.attachments.orphan_after,
                thumbnails: tokio::sync::Semaphore::new(thumbnail::MAX_CONCURRENT),
            }),
        })
    }

    /// Whether this node can keep attachments at all.
    pub fn available(&self) -> bool {
        self.inner.blobs.is_some()
    }

    pub fn describe(&self) -> &'static str {
        self.inner
            .blobs
            .as_ref()
            .map_or("unavailable (no object storage)", Blobs::describe)
    }

    fn blobs(&self) -> Result<&Blobs, AttachmentError> {
        self.inner.blobs.as_ref().ok_or(AttachmentError::Disabled)
    }

    // ---- URLs ----------------------------------------------------------------

    /// What a URL's signature covers. The organization is in it because
    /// it says where the attachment's record lives: a URL names it, and
    /// the signature vouches for it.
    fn signed_mac(&self, purpose: &str, at: Attached, bound: &str, exp: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.inner.url_key.expose_secret())
            .unwrap_or_else(|_| crate::auth::crypto::unreachable_hmac());
        mac.update(format!("{purpose}\n{}\n{}\n{bound}\n{exp}", at.org, at.reference).as_bytes());
        mac
    }

    fn signed_url(
        &self,
        path: &str,
        purpose: &str,
        at: Attached,
        bound: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> String {
        let exp = now.timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let sig = URL_SAFE_NO_PAD.encode(
            self.signed_mac(purpose, at, bound, exp)
                .finalize()
                .into_bytes(),
        );
        format!(
            "{}/{}{path}?org={}&exp={exp}&sig={sig}",
            self.inner.base, at.reference, at.org
        )
    }

    /// Checks a URL's expiry and signature, in constant time.
    fn verify(
        &self,
        purpose: &str,
        at: Attached,
        bound: &str,
        link: &LinkParams,
        now: DateTime<Utc>,
    ) -> Result<(), AttachmentError> {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(link.sig.as_bytes()) else {
            return Err(AttachmentError::NotFound);
        };
        let mac = self.signed_mac(purpose, at, bound, link.exp);
        if mac.verify_slice(&sig).is_err() {
            return Err(AttachmentError::NotFound);
        }
        if link.exp < now.timestamp() {
            return Err(AttachmentError::Expired);
        }
        Ok(())
    }

    /// A fresh download URL for an attachment.
    pub fn download_url(&self, org: OrgId, reference: Uuid, now: DateTime<Utc>) -> String {
        let at = Attached { org, reference };
        self.signed_url("", "get", at, "", DOWNLOAD_URL_TTL, now)
    }

    /// A fresh URL of an attachment's preview (`/thumbnail`).
    pub fn thumbnail_url(&self, org: OrgId, reference: Uuid, now: DateTime<Utc>) -> String {
        let at = Attached { org, reference };
        self.signed_url("/thumbnail", "thumb", at, "", DOWNLOAD_URL_TTL, now)
    }

    /// Fills fresh URLs into the attachments of a message of `org` about to
    /// be shown (delivered, echoed, read from history).
    pub fn refresh(&self, org: OrgId, content: &mut [ContentItem], now: DateTime<Utc>) {
        for item in content {
            if let ContentItem::Attachment { attachment } = item
                && let Some(reference) = attachment.reference
            {
                attachment.url = self.download_url(org, reference, now);
                if attachment.thumbnail_url.is_some() {
                    attachment.thumbnail_url = Some(self.thumbnail_url(org, reference, now));
                }
            }
        }
    }

    // ---- the upload ------------------------------------------------------

    /// Checks a declared upload against the deployment's `fileUpload`
    /// settings (`None` for agents, whose uploads only the node's limits
    /// bound) and the organization's quota, records it, and answers where
    /// to PUT the bytes.
    pub async fn presign_upload(
        &self,
        org: OrgId,
        owner: Owner,
        settings: Option<&FileUpload>,
        request: UploadRequest,
        now: DateTime<Utc>,
    ) -> Result<PresignedUpload, AttachmentError> {
        self.blobs()?;
        let UploadRequest {
            client_id,
            filename,
            mime,
            size,
        } = request;
        if client_id.is_empty() || client_id.chars().count() > MAX_ATTACHMENT_ID_CHARS {
            return Err(AttachmentError::Id);
        }
        let filename = check_filename(&filename)?;
        let mime = sniff::essence(&mime);
        if sniff::is_active_type(&mime) || !mime.contains('/') {
            return Err(AttachmentError::TypeNotAllowed(mime));
        }
        let max_bytes = match settings {
            Some(settings) => {
                if !settings.enable_attachments {
                    return Err(AttachmentError::Disabled);
                }
                let mode = settings
                    .modes
                    .iter()
                    .filter(|m| sniff::type_allowed(&mime, &m.file_types))
                    .max_by_key(|m| m.max_file_size_kb)
                    .ok_or_else(|| AttachmentError::TypeNotAllowed(mime.clone()))?;
                (u64::from(mode.max_file_size_kb) * 1024).min(MAX_UPLOAD_BYTES)
            }
            None => MAX_UPLOAD_BYTES,
        };
        let size = size.unwrap_or(max_bytes);
        if size == 0 {
            return Err(AttachmentError::Size("the file is empty".into()));
        }
        if size > max_bytes {
            return Err(AttachmentError::Size(format!(
                "the file is larger than {} KB",
                max_bytes / 1024
            )));
        }
        let reference = owner.reference(&client_id);
        let existing = record::get(&self.inner.store, org, reference).await?;
        let read = match &existing {
            Some(found) if found.state != State::Pending => return Err(AttachmentError::Sent),
            Some(found) => Some(found.version),
            None => None,
        };
        let others: Vec<AttachmentRecord> = record::list_org(&self.inner.store, org)
            .await?
            .into_iter()
            .filter(|r| r.reference != reference)
            .collect();
        let pending = others
            .iter()
            .filter(|r| r.owner == owner && r.state == State::Pending)
            .count();
        if pending >= MAX_PENDING_PER_OWNER {
            return Err(AttachmentError::TooMany);
        }
        let used: u64 = others.iter().map(AttachmentRecord::stored_bytes).sum();
        if used.saturating_add(size) > self.inner.quota_bytes {
            return Err(AttachmentError::Quota {
                quota_mb: self.inner.quota_bytes / (1024 * 1024),
            });
        }
        let record = AttachmentRecord {
            reference,
            org_id: org,
            owner,
            client_id: client_id.clone(),
            filename,
            mime,
            size,
            state: State::Pending,
            created_at: now,
            uploaded_at: None,
            thumbnail: false,
            thumbnail_size: 0,
            version: 0,
        };
        record::put(&self.inner.store, &record, read).await?;
        let url = self.signed_url(
            "",
            "put",
            Attached { org, reference },
            &owner_bound(owner),
            UPLOAD_URL_TTL,
            now,
        );
        Ok(PresignedUpload {
            reference,
            url,
            headers: BTreeMap::from([("x-attachment-id".to_owned(), client_id)]),
            record,
        })
    }

    /// Receives the bytes of an upload through its signed URL. The URL is
    /// checked first (a wrong one is `NotFound`, telling nothing); then
    /// the size against the declaration and the content against the
    /// declared type. A refused upload's record is removed, which frees
    /// its quota, and the refusal comes back with the record so that the
    /// owner can be told.
    pub async fn receive(
        &self,
        reference: Uuid,
        link: &LinkParams,
        bytes: Bytes,
        now: DateTime<Utc>,
    ) -> Result<AttachmentRecord, Refused> {
        let at = Attached {
            org: OrgId(link.org),
            reference,
        };
        let found = record::get(&self.inner.store, at.org, reference)
            .await
            .map_err(|e| Refused::bare(e.into()))?
            .ok_or(Refused::bare(AttachmentError::NotFound))?;
        self.verify("put", at, &owner_bound(found.owner), link, now)
            .map_err(Refused::bare)?;
        if found.state != State::Pending {
            return Err(Refused::bare(AttachmentError::Sent));
        }
        let blobs = self.blobs().map_err(Refused::bare)?;
        let refuse = |error: AttachmentError| Refused {
            error,
            record: Some(found.clone()),
        };
        let size = bytes.len() as u64;
        if size == 0 || size > found.size {
            let _ = record::delete(&self.inner.store, &found).await;
            return Err(refuse(AttachmentError::Size(format!(
                "the upload is {size} bytes, not the {} declared",
                found.size
            ))));
        }
        let mime = match sniff::check(&found.mime, &bytes) {
            Ok(mime) => mime,
            Err(sniffed) => {
                let _ = record::delete(&self.inner.store, &found).await;
                let error = match sniffed {
                    sniff::Sniffed::ActiveType(mime) => AttachmentError::TypeNotAllowed(mime),
                    other => AttachmentError::Content(other.to_string()),
                };
                return Err(refuse(error));
            }
        };
        let mut uploaded = found.clone();
        blobs
            .put(&uploaded.blob_key(), bytes.clone(), &mime)
            .await
            .map_err(|e| refuse(e.into()))?;
        if let Some(size) = self.make_thumbnail(&uploaded, &mime, bytes).await {
            uploaded.thumbnail = true;
            uploaded.thumbnail_size = size;
        }
        uploaded.mime = mime;
        uploaded.size = size;
        uploaded.state = State::Uploaded;
        uploaded.uploaded_at = Some(now);
        if let Err(e) = record::put(&self.inner.store, &uploaded, Some(found.version)).await {
            if uploaded.thumbnail {
                let _ = blobs.delete(&uploaded.thumbnail_key()).await;
            }
            return Err(refuse(e.into()));
        }
        Ok(uploaded)
    }

    /// Makes and keeps the preview of an image whose bytes were accepted;
    /// answers its size. Best effort: a file that does not decode (or
    /// whose preview cannot be kept) is kept without one.
    async fn make_thumbnail(
        &self,
        found: &AttachmentRecord,
        mime: &str,
        bytes: Bytes,
    ) -> Option<u64> {
        thumbnail::format_of(mime)?;
        let blobs = self.inner.blobs.as_ref()?;
        let made = {
            let _permit = self.inner.thumbnails.acquire().await.ok()?;
            thumbnail::make_blocking(mime.to_owned(), bytes).await
        };
        let png = match made {
            Ok(png) => png,
            Err(e) => {
                tracing::debug!(error = %e, attachment = %found.reference, "no thumbnail");
                return None;
            }
        };
        let size = png.len() as u64;
        match blobs
            .put(
                &found.thumbnail_key(),
                Bytes::from(png),
                thumbnail::CONTENT_TYPE,
            )
            .await
        {
            Ok(()) => Some(size),
            Err(e) => {
                tracing::warn!(error = %e, attachment = %found.reference, "thumbnail not kept");
                None
            }
        }
    }

    /// The bytes behind a download URL, with the record that says how to
    /// serve them.
    pub async fn open(
        &self,
        reference: Uuid,
        link: &LinkParams,
        thumbnail: bool,
        now: DateTime<Utc>,
    ) -> Result<(AttachmentRecord, Bytes), AttachmentError> {
        let purpose = if thumbnail { "thumb" } else { "get" };
        let at = Attached {
            org: OrgId(link.org),
            reference,
        };
        self.verify(purpose, at, "", link, now)?;
        let found = record::get(&self.inner.store, at.org, reference)
            .await?
            .filter(|r| r.state != State::Pending)
            .ok_or(AttachmentError::NotFound)?;
        let key = if thumbnail && found.thumbnail {
            found.thumbnail_key()
        } else {
            found.blob_key()
        };
        let bytes = self
            .blobs()?
            .get(&key)
            .await?
            .ok_or(AttachmentError::NotFound)?;
        Ok((found, bytes))
    }

    /// An owner's attachment by its client id.
    pub async fn find(
        &self,
        org: OrgId,
        owner: Owner,
        client_id: &str,
    ) -> Result<AttachmentRecord, AttachmentError> {
        let found = record::get(&self.inner.store, org, owner.reference(client_id))
            .await?
            .filter(|r| r.owner == owner)
            .ok_or(AttachmentError::NotFound)?;
        Ok(found)
    }

    /// `getAttachment`: a fresh download URL for one of the owner's
    /// uploaded attachments.
    pub async fn refreshed(
        &self,
        org: OrgId,
        owner: Owner,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(AttachmentRecord, String), AttachmentError> {
        let found = self.find(org, owner, client_id).await?;
        if found.state == State::Pending {
            return Err(AttachmentError::NotUploaded);
        }
        let url = self.download_url(org, found.reference, now);
        Ok((found, url))
    }

    /// `deleteAttachment`: removes an upload that no message carries.
    pub async fn delete_unsent(
        &self,
        org: OrgId,
        owner: Owner,
        client_id: &str,
    ) -> Result<(), AttachmentError> {
        let found = self.find(org, owner, client_id).await?;
        if matches!(found.state, State::Sent { .. }) {
            return Err(AttachmentError::Sent);
        }
        self.remove(&found).await
    }

    async fn remove(&self, found: &AttachmentRecord) -> Result<(), AttachmentError> {
        if let Some(blobs) = &self.inner.blobs {
            blobs.delete(&found.blob_key()).await?;
            if found.thumbnail {
                blobs.delete(&found.thumbnail_key()).await?;
            }
        }
        record::delete(&self.inner.store, found).await?;
        Ok(())
    }

    // ---- messages ----------------------------------------------------------

    /// Resolves the attachments a message names against the sender's own
    /// uploads, replacing whatever the sender claimed about them with the
    /// record's name, type and size. Answers the records to mark sent once
    /// the message is logged.
    pub async fn resolve(
        &self,
        org: OrgId,
        owner: Owner,
        content: &mut [ContentItem],
    ) -> Result<Vec<AttachmentRecord>, AttachmentError> {
        let mut used = Vec::new();
        for item in content.iter_mut() {
            let ContentItem::Attachment { attachment } = item else {
                continue;
            };
            if self.inner.blobs.is_none() {
                return Err(AttachmentError::Disabled);
            }
            let found = self.find(org, owner, &attachment.id).await?;
            if found.state == State::Pending {
                return Err(AttachmentError::NotUploaded);
            }
            *attachment = content_of(&found);
            used.push(found);
        }
        Ok(used)
    }

    /// Marks attachments as carried by a message of `conversation`: no
    /// longer orphans, and deleted with that conversation.
    pub async fn mark_sent(&self, used: Vec<AttachmentRecord>, conversation: Uuid) {
        for mut found in used {
            if found.state == (State::Sent { conversation }) {
                continue;
            }
            let read = found.version;
            found.state = State::Sent { conversation };
            if let Err(e) = record::put(&self.inner.store, &found, Some(read)).await {
                tracing::warn!(error = %e, attachment = %found.reference, "an attachment sent could not be marked so; the orphan sweep may remove it");
            }
        }
    }

    // ---- lifecycle ------------------------------------------------------

    /// Deletes the attachments of conversations being deleted (retention,
    /// erasure). Best effort per file: a failure is logged and the rest go
    /// on; a file left behind is found again by the next sweep.
    pub async fn delete_conversations(&self, org: OrgId, conversations: &[Uuid]) -> usize {
        let Ok(all) = record::list_org(&self.inner.store, org).await else {
            return 0;
        };
        let mut deleted = 0;
        for found in all {
            if let State::Sent { conversation } = found.state
                && conversations.contains(&conversation)
            {
                match self.remove(&found).await {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, attachment = %found.reference, "attachment not deleted with its conversation")
                    }
                }
            }
        }
        deleted
    }

    /// Removes an organization's uploads never sent (or never finished)
    /// after the orphan time. Answers how many went.
    pub async fn sweep_orphans(&self, org: OrgId, now: DateTime<Utc>) -> usize {
        let Ok(all) = record::list_org(&self.inner.store, org).await else {
            return 0;
        };
        let cutoff = now
            - chrono::Duration::from_std(self.inner.orphan_after).unwrap_or(chrono::Duration::MAX);
        let mut deleted = 0;
        for found in all {
            let orphan = !matches!(found.state, State::Sent { .. }) && found.created_at < cutoff;
            if orphan && self.remove(&found).await.is_ok() {
                deleted += 1;
            }
        }
        deleted
    }

    /// Bytes an organization keeps (uploads in progress included).
    pub async fn usage(&self, org: OrgId) -> Result<u64, AttachmentError> {
        Ok(record::list_org(&self.inner.store, org)
            .await?
            .iter()
            .map(AttachmentRecord::stored_bytes)
            .sum())
    }
}

/// A refusal of received bytes, with the record when the URL was genuine
/// (its owner is then told).
#[derive(Debug)]
pub struct Refused {
    pub error: AttachmentError,
    pub record: Option<AttachmentRecord>,
}

impl Refused {
    fn bare(error: AttachmentError) -> Self {
        Self {
            error,
            record: None,
        }
    }
}

/// A signed URL's query.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct LinkParams {
    /// The organization the attachment is kept in.
    pub org: Uuid,
    pub exp: i64,
    pub sig: String,
}

/// An attachment's address: where its record lives and which it is.
#[derive(Clone, Copy, Debug)]
struct Attached {
    org: OrgId,
    reference: Uuid,
}

/// What an upload URL is bound to besides the attachment: its owner.
fn owner_bound(owner: Owner) -> String {
    match owner {
        Owner::Session {
            deployment,
            session,
        } => format!("session {deployment} {session}"),
        Owner::Agent { member } => format!("agent {member}"),
    }
}

/// The content item of a message carrying `found`.
pub fn content_of(found: &AttachmentRecord) -> AttachmentContent {
    AttachmentContent {
        id: found.client_id.clone(),
        url: String::new(),
        filename: found.filename.clone(),
        media_type: sniff::media_type(&found.mime).to_owned(),
        mime: Some(found.mime.clone()),
        file_size: Some(found.size),
        thumbnail_url: found.thumbnail.then(String::new),
        reference: Some(found.reference),
    }
}

/// A file name as kept: its last path segment, without control characters,
/// 1 to [`MAX_FILENAME_CHARS`] characters.
fn check_filename(name: &str) -> Result<String, AttachmentError> {
    let name = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if name.is_empty() || name == "." || name == ".." {
        return Err(AttachmentError::Name("is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(AttachmentError::Name("holds control characters"));
    }
    if name.chars().count() > MAX_FILENAME_CHARS {
        return Err(AttachmentError::Name("is too long"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests;
