//! The attachment actions of a bound socket (`onAttachment`,
//! `getAttachment`, `deleteAttachment`) and the upload outcome told on it.
//! The rules are [`crate::attachments`]'s; here they are answered in the
//! classes the Transport SDK decodes: a refusal of one of these actions is
//! a `GenerateUrlError` naming the attachment, which the SDK turns into
//! that attachment's error state.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};

use super::{Conn, Fail, Flow};
use crate::attachments::{AttachmentError, AttachmentRecord, Owner, UploadRequest};
use crate::gateway::conn::{self, Gone};
use crate::gateway::guest::frames::{
    self, AttachmentDeletedResponse, AttachmentUpload, GenerateUrlError, GuestError,
    PresignedUrlResponse, UploadFailureEvent, UploadSuccessEvent,
};
use crate::routing::model::UploadOutcome;

impl Conn {
    /// The session's owner identity for its attachments.
    fn attachment_owner(&self, token: &str) -> Result<Owner, GuestError> {
        let session = self.session_for(token)?;
        Ok(Owner::Session {
            deployment: self.deployment.meta.id,
            session,
        })
    }

    pub(super) async fn on_attachment(
        &mut self,
        token: &str,
        upload: AttachmentUpload,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let owner = self.attachment_owner(token)?;
        let AttachmentUpload {
            attachment_id,
            file_name,
            file_type,
            file_size,
        } = upload;
        let request = UploadRequest {
            client_id: attachment_id.clone(),
            filename: file_name,
            mime: file_type,
            size: file_size,
        };
        let presigned = self
            .state
            .attachments
            .presign_upload(
                self.deployment.org_id,
                owner,
                Some(&self.content.messenger.file_upload),
                request,
                Utc::now(),
            )
            .await
            .map(|presigned| (presigned.headers, presigned.url, presigned.record));
        self.answer_url(attachment_id, presigned, tracing_id).await
    }

    pub(super) async fn get_attachment(
        &mut self,
        token: &str,
        attachment_id: String,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let owner = self.attachment_owner(token)?;
        let refreshed = self
            .state
            .attachments
            .refreshed(self.deployment.org_id, owner, &attachment_id, Utc::now())
            .await
            // No headers and a size: what the SDK takes for a refreshed URL.
            .map(|(found, url)| (BTreeMap::new(), url, found));
        self.answer_url(attachment_id, refreshed, tracing_id).await
    }

    /// Answers a request for an upload or download URL: the
    /// `PresignedUrlResponse` the SDK takes, or the `GenerateUrlError`
    /// naming the attachment.
    async fn answer_url(
        &mut self,
        attachment_id: String,
        answer: Result<(BTreeMap<String, String>, String, AttachmentRecord), AttachmentError>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        match answer {
            Ok((headers, url, record)) => {
                let answer = url_answer(attachment_id, headers, url, record);
                self.respond("PresignedUrlResponse", answer, tracing_id)
                    .await?;
                Ok(Flow::Continue)
            }
            Err(error) => self.url_error(attachment_id, &error, tracing_id).await,
        }
    }

    pub(super) async fn delete_attachment(
        &mut self,
        token: &str,
        attachment_id: String,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let owner = self.attachment_owner(token)?;
        match self
            .state
            .attachments
            .delete_unsent(self.deployment.org_id, owner, &attachment_id)
            .await
        {
            Ok(()) => {
                let frame = frames::own_message(
                    "AttachmentDeletedResponse",
                    AttachmentDeletedResponse { attachment_id },
                    tracing_id,
                );
                conn::send_text(&mut self.ws, frame).await?;
                Ok(Flow::Continue)
            }
            Err(error) => self.url_error(attachment_id, &error, tracing_id).await,
        }
    }

    /// A refused attachment action: `GenerateUrlError`, a `message` as
    /// Genesys sends it, with the request's tracing id.
    async fn url_error(
        &mut self,
        attachment_id: String,
        error: &AttachmentError,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        tracing::debug!(code = error.code(), %error, "attachment request refused");
        let frame = frames::own_message(
            "GenerateUrlError",
            GenerateUrlError {
                attachment_id,
                error_code: error.code(),
                error_message: error.to_string(),
            },
            tracing_id,
        );
        conn::send_text(&mut self.ws, frame).await?;
        Ok(Flow::Continue)
    }

    /// An upload of this session finished on some node: the client hears
    /// `UploadSuccessEvent` (with a fresh download URL) or
    /// `UploadFailureEvent`.
    pub(super) async fn on_upload(&mut self, outcome: UploadOutcome) -> Result<(), Gone> {
        let timestamp = outcome.time.to_rfc3339_opts(SecondsFormat::Millis, true);
        match outcome.error {
            None => {
                let now = Utc::now();
                let org = self.deployment.org_id;
                let download_url = self
                    .state
                    .attachments
                    .download_url(org, outcome.reference, now);
                let thumbnail_url = outcome.thumbnail.then(|| {
                    self.state
                        .attachments
                        .thumbnail_url(org, outcome.reference, now)
                });
                self.push(
                    "UploadSuccessEvent",
                    UploadSuccessEvent {
                        attachment_id: outcome.attachment_id,
                        download_url,
                        thumbnail_url,
                        timestamp,
                    },
                )
                .await
            }
            Some((error_code, error_message)) => {
                self.push(
                    "UploadFailureEvent",
                    UploadFailureEvent {
                        attachment_id: outcome.attachment_id,
                        error_code,
                        error_message,
                        timestamp,
                    },
                )
                .await
            }
        }
    }

    /// Resolves the attachments a message names against the session's own
    /// uploads (see [`crate::attachments::Attachments::resolve`]).
    pub(super) async fn resolve_attachments(
        &mut self,
        token: &str,
        content: &mut [crate::routing::model::ContentItem],
    ) -> Result<Vec<AttachmentRecord>, Fail> {
        if !content
            .iter()
            .any(|c| matches!(c, crate::routing::model::ContentItem::Attachment { .. }))
        {
            return Ok(Vec::new());
        }
        let owner = self.attachment_owner(token)?;
        if !self.content.messenger.file_upload.enable_attachments
            || !self.state.attachments.available()
        {
            let off = AttachmentError::Disabled;
            return Err(Fail::Guest(GuestError::new(off.code(), off.to_string())));
        }
        self.state
            .attachments
            .resolve(self.deployment.org_id, owner, content)
            .await
            .map_err(|e| Fail::Guest(GuestError::new(e.code(), e.to_string())))
    }
}

/// A `PresignedUrlResponse` for `record`: an upload URL with its headers,
/// or (headers empty) a refreshed download URL.
fn url_answer(
    attachment_id: String,
    headers: BTreeMap<String, String>,
    url: String,
    record: AttachmentRecord,
) -> PresignedUrlResponse {
    PresignedUrlResponse {
        attachment_id,
        headers,
        url,
        file_name: record.filename,
        file_size: record.size,
        file_type: record.mime,
    }
}
