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
    // Not a published type (4001); over the mode's size, or empty (4002).
    for (refused, code) in [
        (request("x", "application/pdf", 10), 4001),
        (request("x", "text/html", 10), 4001),
        (request("x", "image/png", 2000), 4002),
        (request("x", "image/png", 0), 4002),
    ] {
        let what = format!("{} of {:?} bytes", refused.mime, refused.size);
        assert_eq!(presign(refused).await.unwrap_err().code(), code, "{what}");
    }
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

/// A `width`x`height` image with some noise in it, so that it does not
/// compress to nothing, encoded as `format`.
fn picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed & 0x3f) as u8;
        image::Rgb([
            (x % 256) as u8 ^ noise,
            (y % 256) as u8,
            noise.wrapping_mul(3),
        ])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

/// A PNG whose header declares `width`x`height` RGBA pixels, followed by
/// a few bytes of data: what a decompression bomb looks like to a decoder
/// before it allocates.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    fn crc(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffff_u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let sum = crc(&out[start..]);
        out.extend_from_slice(&sum.to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    // A zlib stream of zeros: what would inflate to the whole image.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Uploads `bytes` as `mime` and answers the stored record.
async fn upload(f: &Fixture, id: &str, mime: &str, bytes: Vec<u8>) -> AttachmentRecord {
    let now = Utc::now();
    let up = f
        .attachments
        .presign_upload(
            ORG,
            owner(1),
            None,
            request(id, mime, bytes.len() as u64),
            now,
        )
        .await
        .unwrap();
    let (reference, params) = link(&up.url);
    f.attachments
        .receive(reference, &params, Bytes::from(bytes), now)
        .await
        .unwrap()
}

#[tokio::test]
async fn images_get_a_png_preview_within_256_pixels_keeping_their_shape() {
    let f = fixture(1 << 30).await;
    let now = Utc::now();
    for (id, mime, format) in [
        ("png", "image/png", image::ImageFormat::Png),
        ("jpeg", "image/jpeg", image::ImageFormat::Jpeg),
        ("gif", "image/gif", image::ImageFormat::Gif),
    ] {
        let original = picture(1000, 500, format);
        let stored = upload(&f, id, mime, original.clone()).await;
        assert!(stored.thumbnail, "{mime}");
        assert!(stored.thumbnail_size > 0, "{mime}");
        assert!(f.attachments.usage(ORG).await.unwrap() >= stored.size + stored.thumbnail_size);
        // The message names it; its preview URL is fresh like the file's.
        let item = content_of(&stored);
        let mut content = vec![ContentItem::Attachment { attachment: item }];
        f.attachments.refresh(ORG, &mut content, now);
        let ContentItem::Attachment { attachment } = &content[0] else {
            panic!("not an attachment");
        };
        let preview = attachment.thumbnail_url.as_deref().unwrap();
        assert!(preview.contains("/thumbnail?"), "{preview}");
        let (reference, params) = link(preview);
        let (_, png) = f
            .attachments
            .open(reference, &params, true, now)
            .await
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{mime}");
        assert_eq!(png.len() as u64, stored.thumbnail_size);
        assert!(png.len() < original.len(), "{mime}");
        let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (256, 128), "{mime}");
        // The file itself is still the file.
        let (_, params) = link(&attachment.url);
        let (_, file) = f
            .attachments
            .open(reference, &params, false, now)
            .await
            .unwrap();
        assert_eq!(&file[..], &original[..]);
    }
    // Tall images keep their shape too.
    let tall = upload(
        &f,
        "tall",
        "image/png",
        picture(300, 900, image::ImageFormat::Png),
    )
    .await;
    let png = thumbnail::make("image/png", &picture(300, 900, image::ImageFormat::Png)).unwrap();
    let decoded = image::load_from_memory(&png).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (85, 256));
    assert!(tall.thumbnail);
}

#[tokio::test]
async fn images_that_do_not_decode_within_the_limits_upload_without_a_preview() {
    let f = fixture(1 << 30).await;
    for (id, bytes) in [
        // Wider than any image previews are made of.
        ("wide", png_declaring(100_000, 100_000)),
        ("long", png_declaring(10_001, 1)),
        // Within the sides, but more pixels than the decoder may allocate.
        ("big", png_declaring(9_000, 9_000)),
        // Truncated.
        (
            "cut",
            picture(600, 600, image::ImageFormat::Png)[..2000].to_vec(),
        ),
    ] {
        assert!(thumbnail::make("image/png", &bytes).is_err(), "{id}");
        let stored = upload(&f, id, "image/png", bytes).await;
        assert_eq!(stored.state, State::Uploaded, "{id}");
        assert!(!stored.thumbnail, "{id}");
        assert_eq!(stored.thumbnail_size, 0, "{id}");
        assert_eq!(content_of(&stored).thumbnail_url, None, "{id}");
    }
    // Other files get none, and a preview never exceeds the file.
    let text = upload(&f, "text", "text/plain", b"hello".to_vec()).await;
    assert!(!text.thumbnail);
    let tiny = picture(4, 4, image::ImageFormat::Png);
    match thumbnail::make("image/png", &tiny) {
        Ok(png) => assert!(png.len() < tiny.len()),
        Err(e) => assert!(matches!(e, thumbnail::NoThumbnail::NotSmaller), "{e}"),
    }
}

#[tokio::test]
async fn a_preview_goes_with_its_file() {
    let f = fixture(1 << 30).await;
    let stored = upload(
        &f,
        "p",
        "image/png",
        picture(800, 600, image::ImageFormat::Png),
    )
    .await;
    assert!(stored.thumbnail);
    let blobs = f.attachments.blobs().unwrap();
    assert!(blobs.get(&stored.thumbnail_key()).await.unwrap().is_some());
    f.attachments
        .delete_unsent(ORG, owner(1), "p")
        .await
        .unwrap();
    assert!(blobs.get(&stored.thumbnail_key()).await.unwrap().is_none());
    assert!(blobs.get(&stored.blob_key()).await.unwrap().is_none());
    assert_eq!(f.attachments.usage(ORG).await.unwrap(), 0);
}
