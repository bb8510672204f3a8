use super::*;
use crate::engine::{EmbeddedEngine, Engine};
use crate::store::records::FileUploadMode;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";

struct Fixture {
    _dir: tempfile::TempDir,
    attachments: Attachments,
}

async fn fixture(quota_bytes: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
    let store = Store::new(Engine::Embedded(engine));
    let config = Config::load_with(None, |name| match name {
        "SWITCHBOARD_DATA_DIR" => Some(dir.path().display().to_string()),
        "SWITCHBOARD_PUBLIC_URL" => Some("https://chat.example".to_owned()),
        _ => None,
    })
    .unwrap();
    let mut config = config;
    config.attachments.quota_bytes = quota_bytes;
    let master = MasterKey::from_bytes([7; 32]);
    let attachments = Attachments::new(&config, &master, store).unwrap();
    Fixture {
        _dir: dir,
        attachments,
    }
}

fn settings() -> FileUpload {
    FileUpload {
        enable_attachments: true,
        modes: vec![FileUploadMode {
            file_types: vec!["image/png".into(), "text/plain".into()],
            max_file_size_kb: 1,
        }],
    }
}

fn request(id: &str, mime: &str, size: u64) -> UploadRequest {
    UploadRequest {
        client_id: id.into(),
        filename: "dir/photo.png".into(),
        mime: mime.into(),
        size: Some(size),
    }
}

fn link(url: &str) -> (Uuid, LinkParams) {
    let url = url::Url::parse(url).unwrap();
    let reference = url
        .path_segments()
        .unwrap()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    let query: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    (
        reference,
        LinkParams {
            org: query["org"].parse().unwrap(),
            exp: query["exp"].parse().unwrap(),
            sig: query["sig"].clone(),
        },
    )
}

const ORG: OrgId = OrgId(Uuid::from_u128(1));

fn owner(session: u128) -> Owner {
    Owner::Session {
        deployment: Uuid::from_u128(9),
        session: Uuid::from_u128(session),
    }
}

#[tokio::test]
async fn an_upload_goes_through_its_url_and_comes_back_through_a_fresh_one() {
    let f = fixture(1 << 20).await;
    let now = Utc::now();
    let up = f
        .attachments
        .presign_upload(
            ORG,
            owner(1),
            Some(&settings()),
            request("a-1", "image/png", PNG.len() as u64),
            now,
        )
        .await
        .unwrap();
    assert!(
        up.url
            .starts_with("https://chat.example/api/v1/attachments/")
    );
    assert!(!up.headers.is_empty());
    let (reference, params) = link(&up.url);
    let stored = f
        .attachments
        .receive(reference, &params, Bytes::from_static(PNG), now)
        .await
        .unwrap();
    assert_eq!(
        (stored.filename.as_str(), stored.state),
        ("photo.png", State::Uploaded)
    );
    // Naming it in a message fills in the record's facts.
    let mut content = vec![ContentItem::Attachment {
        attachment: AttachmentContent {
            id: "a-1".into(),
            url: "https://evil.example".into(),
            filename: "lies.exe".into(),
            media_type: "File".into(),
            mime: None,
            file_size: None,
            thumbnail_url: None,
            reference: None,
        },
    }];
    let used = f
        .attachments
        .resolve(ORG, owner(1), &mut content)
        .await
        .unwrap();
    f.attachments.refresh(ORG, &mut content, now);
    let ContentItem::Attachment { attachment } = &content[0] else {
        panic!("not an attachment");
    };
    assert_eq!(attachment.filename, "photo.png");
    assert_eq!(attachment.media_type, "Image");
    let (again, params) = link(&attachment.url);
    assert_eq!(again, reference);
    let (_, bytes) = f
        .attachments
        .open(reference, &params, false, now)
        .await
        .unwrap();
    assert_eq!(&bytes[..], PNG);
    // Another session cannot name it.
    let mut theirs = content.clone();
    assert_eq!(
        f.attachments
            .resolve(ORG, owner(2), &mut theirs)
            .await
            .unwrap_err(),
        AttachmentError::NotFound
    );
    // A tampered or expired URL opens nothing.
    let forged = LinkParams {
        org: params.org,
        exp: params.exp + 1,
        sig: params.sig.clone(),
    };
    assert_eq!(
        f.attachments
            .open(reference, &forged, false, now)
            .await
            .unwrap_err(),
        AttachmentError::NotFound
    );
    // The organization a URL names is signed too: another's opens nothing.
    let elsewhere = LinkParams {
        org: Uuid::from_u128(2),
        exp: params.exp,
        sig: params.sig.clone(),
    };
    assert_eq!(
        f.attachments
            .open(reference, &elsewhere, false, now)
            .await
            .unwrap_err(),
        AttachmentError::NotFound
    );
    let late = now + chrono::Duration::hours(2);
    assert_eq!(
        f.attachments
            .open(reference, &params, false, late)
            .await
            .unwrap_err(),
        AttachmentError::Expired
    );
    // Sent, it is deleted with its conversation, not before.
    let conversation = Uuid::from_u128(77);
    f.attachments.mark_sent(used, conversation).await;
    assert_eq!(
        f.attachments
            .delete_unsent(ORG, owner(1), "a-1")
            .await
            .unwrap_err(),
        AttachmentError::Sent
    );
    assert_eq!(
        f.attachments
            .sweep_orphans(ORG, late + chrono::Duration::days(1))
            .await,
        0
    );
    assert_eq!(
        f.attachments
            .delete_conversations(ORG, &[conversation])
            .await,
        1
    );
    assert_eq!(
        f.attachments
            .open(reference, &params, false, now)
            .await
            .unwrap_err(),
        AttachmentError::NotFound
    );
    assert_eq!(f.attachments.usage(ORG).await.unwrap(), 0);
}

#[tokio::test]
async fn declarations_are_held_to_the_modes_and_bytes_to_the_declaration() {
    let f = fixture(1 << 20).await;
    let now = Utc::now();
    let presign = |req: UploadRequest| {
        let attachments = f.attachments.clone();
        async move {
            attachments
                .presign_upload(ORG, owner(1), Some(&settings()), req, now)
                .await
        }
    };
    assert_eq!(
        presign(request("x", "application/pdf", 10))
            .await
            .unwrap_err()
            .code(),
        4001
    );
    assert_eq!(
        presign(request("x", "text/html", 10))
            .await
            .unwrap_err()
            .code(),
        4001
    );
    assert_eq!(
        presign(request("x", "image/png", 2000))
            .await
            .unwrap_err()
            .code(),
        4002
    );
    assert_eq!(
        presign(request("x", "image/png", 0))
            .await
            .unwrap_err()
            .code(),
        4002
    );
    let mut long = request("x", "image/png", 10);
    long.filename = "a".repeat(300);
    assert_eq!(presign(long).await.unwrap_err().code(), 4005);
    let disabled = FileUpload {
        enable_attachments: false,
        ..settings()
    };
    let refused = f
        .attachments
        .presign_upload(
            ORG,
            owner(1),
            Some(&disabled),
            request("x", "image/png", 10),
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), 4000);
    // Bytes that are not what was declared are refused, and the record goes.
    let up = presign(request("t", "text/plain", 100)).await.unwrap();
    let (reference, params) = link(&up.url);
    let refused = f
        .attachments
        .receive(
            reference,
            &params,
            Bytes::from_static(b"<html><script>x</script>"),
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.error.code(), 4003);
    assert!(refused.record.is_some());
    assert_eq!(f.attachments.usage(ORG).await.unwrap(), 0);
    let up = presign(request("p", "image/png", 4)).await.unwrap();
    let (reference, params) = link(&up.url);
    let refused = f
        .attachments
        .receive(reference, &params, Bytes::from_static(PNG), now)
        .await
        .unwrap_err();
    assert_eq!(refused.error.code(), 4002, "more bytes than declared");
}

#[tokio::test]
async fn the_quota_counts_every_upload_of_the_organization_and_orphans_go() {
    let f = fixture(1000).await;
    let now = Utc::now();
    let ok = f
        .attachments
        .presign_upload(
            ORG,
            owner(1),
            Some(&settings()),
            request("a", "text/plain", 600),
            now,
        )
        .await;
    assert!(ok.is_ok());
    let refused = f
        .attachments
        .presign_upload(
            ORG,
            owner(2),
            Some(&settings()),
            request("b", "text/plain", 600),
            now,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AttachmentError::Quota { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("quota"));
    // Another organization has its own.
    let other = OrgId(Uuid::from_u128(2));
    assert!(
        f.attachments
            .presign_upload(
                other,
                owner(3),
                Some(&settings()),
                request("c", "text/plain", 600),
                now
            )
            .await
            .is_ok()
    );
    // Never uploaded: an orphan after the orphan time, not before.
    assert_eq!(f.attachments.sweep_orphans(ORG, now).await, 0);
    assert_eq!(
        f.attachments
            .sweep_orphans(ORG, now + chrono::Duration::days(1))
            .await,
        1
    );
    assert_eq!(f.attachments.usage(ORG).await.unwrap(), 0);
}

#[tokio::test]
async fn an_owner_has_a_bounded_number_of_uploads_in_progress() {
    let f = fixture(1 << 30).await;
    let now = Utc::now();
    for i in 0..MAX_PENDING_PER_OWNER {
        f.attachments
            .presign_upload(
                ORG,
                owner(1),
                Some(&settings()),
                request(&format!("p{i}"), "text/plain", 5),
                now,
            )
            .await
            .unwrap();
    }
    let refused = f
        .attachments
        .presign_upload(
            ORG,
            owner(1),
            Some(&settings()),
            request("one-more", "text/plain", 5),
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), 4029);
    // Asking again for one of them is no new upload; another session has
    // its own allowance.
    assert!(
        f.attachments
            .presign_upload(
                ORG,
                owner(1),
                Some(&settings()),
                request("p0", "text/plain", 5),
                now
            )
            .await
            .is_ok()
    );
    assert!(
        f.attachments
            .presign_upload(
                ORG,
                owner(2),
                Some(&settings()),
                request("x", "text/plain", 5),
                now
            )
            .await
            .is_ok()
    );
}
