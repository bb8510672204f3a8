//! Attachments as the Transport SDK drives them: `onAttachment` for a
//! presigned URL, the PUT of the bytes with its headers,
//! `UploadSuccessEvent` on the socket, a message naming the attachment,
//! the agent's copy with a download URL (bytes equal), a file the agent
//! sends back, `getAttachment` and `deleteAttachment`; and the refusals
//! by type, by size and by sniffed content, with the codes the SDK maps.
//! On Redis the bytes go to a real S3-compatible server (moto).

use serde_json::{Value, json};

use super::client::SdkClient;
use super::sdk::{Content, Frame, GenerateUrlError, PresignedUrlResponse};
use super::*;
use crate::on_both_engines;
use crate::support::app::{EngineKind, Setup, TestApp};

/// A tiny PNG's first bytes: what the sniffing checks.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

/// A real 1000x500 PNG (tiles of flat colour, so that it stays well
/// within the mode's 64 KB): the kind of image that gets a server-made
/// preview.
fn photo() -> Vec<u8> {
    let image = image::RgbImage::from_fn(1000, 500, |x, y| {
        image::Rgb([(x / 50 * 12) as u8, (y / 50 * 25) as u8, 128])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A preview URL serves a PNG within 256x256 (here 256x128, the
/// photo's shape), smaller than the file, as inert as the file.
async fn assert_preview(app: &TestApp, url: &str, original: usize) {
    assert!(url.contains("/thumbnail?"), "{url}");
    let (headers, bytes) = download(app, url).await;
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert!(bytes.len() < original, "{} >= {original}", bytes.len());
    let preview = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    assert_eq!((preview.width(), preview.height()), (256, 128));
}

/// The SDK's `OnAttachmentRequest` (its serialization test's field order).
fn on_attachment(sdk: &SdkClient, id: &str, name: &str, kind: &str, size: usize) -> Value {
    json!({ "token": sdk.token, "attachmentId": id, "fileName": name, "fileType": kind,
        "fileSize": size, "errorsAsJson": true, "tracingId": Uuid::new_v4().to_string(),
        "action": "onAttachment" })
}

fn by_id(sdk: &SdkClient, action: &str, id: &str) -> Value {
    json!({ "token": sdk.token, "attachmentId": id, "tracingId": Uuid::new_v4().to_string(),
        "action": action })
}

/// `sendMessage("", attachments)`: Text, empty text, the ids.
fn with_attachment(sdk: &SdkClient, id: &str) -> Value {
    json!({ "token": sdk.token, "message": { "text": "",
        "content": [{ "contentType": "Attachment", "attachment": { "id": id } }], "type": "Text" },
        "tracingId": Uuid::new_v4().to_string(), "action": "onMessage" })
}

/// `WebMessagingApi.uploadFile`: a PUT of the bytes with the presigned
/// headers and the content type from the file name.
async fn upload(
    app: &TestApp,
    presigned: &PresignedUrlResponse,
    kind: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let mut request = app.http.put(&presigned.url).header("content-type", kind);
    for (name, value) in &presigned.headers {
        request = request.header(name, value);
    }
    request.body(bytes.to_vec()).send().await.unwrap()
}

async fn download(app: &TestApp, url: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    let headers = response.headers().clone();
    (headers, response.bytes().await.unwrap().to_vec())
}

/// Asks for an upload URL for `id`, uploads `bytes` and waits for the
/// success event; answers the stored file's reference (from its download
/// URL, `/api/v1/attachments/<reference>?...`).
async fn uploaded(
    app: &TestApp,
    sdk: &mut SdkClient,
    id: &str,
    name: &str,
    kind: &str,
    bytes: &[u8],
) -> String {
    let url = presigned(
        &sdk.request(on_attachment(sdk, id, name, kind, bytes.len()))
            .await,
    );
    assert_eq!(
        upload(app, &url, kind, bytes).await.status(),
        StatusCode::OK
    );
    let success: Frame<sdk::UploadSuccessEvent> = decode(&sdk.next_of("UploadSuccessEvent").await);
    success
        .body
        .download_url
        .split('/')
        .nth(6)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

fn presigned(frame: &Value) -> PresignedUrlResponse {
    assert_eq!(frame["class"], "PresignedUrlResponse", "{frame}");
    decode::<Frame<PresignedUrlResponse>>(frame).body
}

fn url_error(frame: &Value) -> GenerateUrlError {
    assert_eq!(frame["class"], "GenerateUrlError", "{frame}");
    decode::<Frame<GenerateUrlError>>(frame).body
}

/// The attachment item of an agent's event or snapshot naming `id`.
fn agent_attachment(frame: &Value, id: &str) -> Option<Value> {
    let events: Vec<&Value> = if frame["type"] == "event" {
        vec![frame]
    } else {
        crate::support::agent::held_in(frame)
            .into_iter()
            .flat_map(|c| c["events"].as_array().into_iter().flatten())
            .collect()
    };
    events
        .into_iter()
        .flat_map(|e| e["content"].as_array().into_iter().flatten())
        .find(|c| c["contentType"] == "Attachment" && c["attachment"]["id"] == id)
        .map(|c| c["attachment"].clone())
}

async fn attachments_round_trip(kind: EngineKind) {
    let setup = Setup::new(kind);
    let setup = match kind {
        EngineKind::Embedded => setup,
        _ => setup.with_s3().await,
    };
    let app = TestApp::spawn_with(setup).await;
    let admin = app.admin().await;
    let modes = json!({ "fileUpload": { "enableAttachments": true, "modes": [
        { "fileTypes": ["image/png", "image/jpeg", "text/plain"], "maxFileSizeKB": 64 },
        { "fileTypes": ["application/pdf"], "maxFileSizeKB": 128 },
    ] } });
    let configuration = published(&app, &admin, configuration(None, modes)).await;
    let id = deployment(
        &app,
        &admin,
        &configuration,
        json!({ "allowedAppHosts": [APP_SOCKET_HOST, APP_DOMAIN] }),
    )
    .await;
    let (_, token) = app.client(&admin, "Bot", &["agent"]).await;
    let (mut bot, _) = app.agent(&token).await;
    bot.available().await;
    let mut sdk = SdkClient::open(&app, &id).await;
    let session = sdk.configure(false).await;
    let media = session
        .allowed_media
        .expect("allowedMedia while attachments are on");
    let inbound = media.inbound.expect("inbound media");
    let types: Vec<&str> = inbound.file_types.iter().map(|t| t.kind.as_str()).collect();
    assert!(
        types.contains(&"image/png") && types.contains(&"application/pdf"),
        "{types:?}"
    );
    assert_eq!(inbound.max_file_size_kb, Some(128));

    // Upload: presigned URL with headers, the PUT, UploadSuccessEvent.
    let answer = sdk
        .request(on_attachment(
            &sdk,
            "img-1",
            "photo.png",
            "image/png",
            PNG.len(),
        ))
        .await;
    let url = presigned(&answer);
    assert_eq!(url.attachment_id, "img-1");
    assert!(
        !url.headers.is_empty(),
        "headers make it an upload URL to the SDK"
    );
    let put = upload(&app, &url, "image/png", PNG).await;
    assert_eq!(put.status(), StatusCode::OK);
    let success: Frame<sdk::UploadSuccessEvent> = decode(&sdk.next_of("UploadSuccessEvent").await);
    assert_eq!(success.body.attachment_id, "img-1");
    let (headers, bytes) = download(&app, &success.body.download_url).await;
    assert_eq!(bytes, PNG);
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-type"], "image/png");

    // The message naming it: echoed with the file's facts and a URL.
    let echo = sdk.request(with_attachment(&sdk, "img-1")).await;
    let echo_conversation = echo["body"]["conversationId"].as_str().unwrap().to_owned();
    let echo: Frame<sdk::StructuredMessage> = decode(&echo);
    let Content::Attachment(sent) = &echo.body.content[0] else {
        panic!("{:?}", echo.body.content)
    };
    assert_eq!(
        (
            sent.attachment.id.as_str(),
            sent.attachment.filename.as_str(),
            sent.attachment.media_type.as_str()
        ),
        ("img-1", "photo.png", "Image")
    );
    assert_eq!(download(&app, &sent.attachment.url).await.1, PNG);
    let conversation: Uuid = echo_conversation.parse().unwrap();

    // The agent sees it with a download URL of its own.
    bot.offer_of(conversation).await;
    bot.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let seen = bot
        .find("the visitor's attachment", |f| {
            agent_attachment(f, "img-1").is_some()
        })
        .await;
    let seen = agent_attachment(&seen, "img-1").unwrap();
    assert_eq!(seen["mime"], "image/png");
    assert_eq!(download(&app, seen["url"].as_str().unwrap()).await.1, PNG);

    // The agent sends a file back.
    let grant = bot
        .ok(
            json!({ "type": "attachmentUrl", "conversationId": conversation,
            "fileName": "invoice.pdf", "fileType": "application/pdf", "fileSize": PDF.len() }),
        )
        .await;
    let agent_file = grant["result"]["attachmentId"].as_str().unwrap().to_owned();
    let put = app
        .http
        .put(grant["result"]["url"].as_str().unwrap())
        .body(PDF.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    bot.ok(json!({ "type": "send", "conversationId": conversation,
        "content": [{ "contentType": "Attachment", "attachment": { "id": agent_file } }] }))
        .await;
    let received = loop {
        let message = sdk.message().await;
        if message.body.direction == "Outbound"
            && let Some(Content::Attachment(file)) = message.body.content.first()
        {
            break file.attachment.clone();
        }
    };
    assert_eq!(
        (received.filename.as_str(), received.media_type.as_str()),
        ("invoice.pdf", "File")
    );
    let (headers, bytes) = download(&app, &received.url).await;
    assert_eq!(bytes, PDF);
    assert_eq!(headers["content-type"], "application/pdf");

    // getAttachment: a refreshed URL (no headers, a size).
    let refreshed = presigned(&sdk.request(by_id(&sdk, "getAttachment", "img-1")).await);
    assert!(refreshed.headers.is_empty());
    assert_eq!(refreshed.file_size, Some(i32::try_from(PNG.len()).unwrap()));
    assert_eq!(download(&app, &refreshed.url).await.1, PNG);
    // That tiny PNG does not decode: it has no preview.
    assert!(sent.attachment.thumbnail_url.is_none());

    // A real image gets a server-made preview, named by the upload event,
    // the message, the agent's copy (and history, below).
    let picture = photo();
    let url = presigned(
        &sdk.request(on_attachment(
            &sdk,
            "img-2",
            "view.png",
            "image/png",
            picture.len(),
        ))
        .await,
    );
    assert_eq!(
        upload(&app, &url, "image/png", &picture).await.status(),
        StatusCode::OK
    );
    let event = sdk.next_of("UploadSuccessEvent").await;
    let preview = event["body"]["thumbnailUrl"].as_str().expect("a preview");
    assert_preview(&app, preview, picture.len()).await;
    let echo = sdk.request(with_attachment(&sdk, "img-2")).await;
    let echo: Frame<sdk::StructuredMessage> = decode(&echo);
    let Content::Attachment(sent) = &echo.body.content[0] else {
        panic!("{:?}", echo.body.content)
    };
    let preview = sent.attachment.thumbnail_url.as_deref().expect("a preview");
    assert_preview(&app, preview, picture.len()).await;
    assert_eq!(download(&app, &sent.attachment.url).await.1, picture);
    let seen = bot
        .find("the visitor's image", |f| {
            agent_attachment(f, "img-2").is_some()
        })
        .await;
    let seen = agent_attachment(&seen, "img-2").unwrap();
    assert_preview(&app, seen["thumbnailUrl"].as_str().unwrap(), picture.len()).await;

    // Refusals: a type no mode allows, a size over the mode, HTML declared
    // as text, a PNG's bytes declared as a PDF.
    let refused = url_error(
        &sdk.request(on_attachment(&sdk, "z", "a.zip", "application/zip", 10))
            .await,
    );
    assert_eq!(
        (refused.attachment_id.as_str(), refused.error_code),
        ("z", 4001)
    );
    let refused = url_error(
        &sdk.request(on_attachment(&sdk, "svg", "a.svg", "image/svg+xml", 10))
            .await,
    );
    assert_eq!(refused.error_code, 4001);
    let refused = url_error(
        &sdk.request(on_attachment(&sdk, "big", "b.png", "image/png", 65 * 1024))
            .await,
    );
    assert_eq!(refused.error_code, 4002);
    for (name, kind, bytes) in [
        (
            "x.txt",
            "text/plain",
            &b"<html><script>alert(1)</script>"[..],
        ),
        ("y.pdf", "application/pdf", PNG),
    ] {
        let url = presigned(
            &sdk.request(on_attachment(&sdk, name, name, kind, bytes.len()))
                .await,
        );
        let put = upload(&app, &url, kind, bytes).await;
        assert_eq!(put.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        let failure: Frame<sdk::UploadFailureEvent> =
            decode(&sdk.next_of("UploadFailureEvent").await);
        assert_eq!(
            (failure.body.attachment_id.as_str(), failure.body.error_code),
            (name, 4003)
        );
    }
    // A message naming an upload that failed, or another's, is refused.
    let answer = sdk.request(with_attachment(&sdk, "x.txt")).await;
    assert_eq!(answer["code"], 4009, "{answer}");

    // deleteAttachment: an upload not sent yet goes; a sent one stays.
    let url = presigned(
        &sdk.request(on_attachment(&sdk, "tmp", "notes.txt", "text/plain", 5))
            .await,
    );
    assert_eq!(
        upload(&app, &url, "text/plain", b"hello").await.status(),
        StatusCode::OK
    );
    sdk.next_of("UploadSuccessEvent").await;
    let deleted = sdk.request(by_id(&sdk, "deleteAttachment", "tmp")).await;
    assert_eq!(deleted["class"], "AttachmentDeletedResponse", "{deleted}");
    assert_eq!(deleted["body"]["attachmentId"], "tmp");
    assert_eq!(
        url_error(&sdk.request(by_id(&sdk, "getAttachment", "tmp")).await).error_code,
        4009
    );
    assert_eq!(
        url_error(&sdk.request(by_id(&sdk, "deleteAttachment", "img-1")).await).error_code,
        4009
    );

    // A forged or expired URL serves nothing.
    let forged = success.body.download_url.replace("sig=", "sig=A");
    assert_eq!(
        app.http.get(&forged).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // History returns the attachment with a fresh, working URL.
    let jwt = sdk.request(sdk.get_jwt()).await["body"]["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let history: Value = app
        .http
        .get(app.url(HISTORY))
        .header("authorization", format!("bearer {jwt}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_no_nulls(&history, "history");
    let _: sdk::MessageEntityList = decode(&history);
    let url = history["entities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["content"].as_array().into_iter().flatten())
        .find(|c| c["attachment"]["id"] == "img-1")
        .and_then(|c| c["attachment"]["url"].as_str())
        .expect("the attachment in history")
        .to_owned();
    assert_eq!(download(&app, &url).await.1, PNG);
    let preview = history["entities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["content"].as_array().into_iter().flatten())
        .find(|c| c["attachment"]["id"] == "img-2")
        .and_then(|c| c["attachment"]["thumbnailUrl"].as_str())
        .expect("the image's preview in history")
        .to_owned();
    assert_preview(&app, &preview, picture.len()).await;

    // Erasing the conversation deletes its files, previews included.
    app.state()
        .routing
        .erase_conversation(app.org(), conversation, None, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        app.http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.http.get(&preview).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

on_both_engines!(attachments_round_trip);

/// Where a file's bytes are, read straight from the storage behind the
/// node (the bucket on Redis, the data directory on the embedded engine):
/// `None` once they are gone.
async fn stored_bytes(app: &TestApp, reference: &str) -> Option<Vec<u8>> {
    let env = &app.setup.env;
    let org = app
        .call(
            Method::GET,
            "/api/v2/organizations/me",
            Some(&app.admin().await),
            None,
        )
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = format!("{org}/{reference}");
    match env.get(switchboard::config::ENV_S3_BUCKET) {
        Some(bucket) => {
            let s3 = switchboard::config::S3Config {
                bucket: bucket.clone(),
                endpoint: env[switchboard::config::ENV_S3_ENDPOINT].parse().unwrap(),
                region: env[switchboard::config::ENV_S3_REGION].clone(),
                access_key_id: env[switchboard::config::ENV_S3_ACCESS_KEY_ID].clone(),
                secret_access_key: env[switchboard::config::ENV_S3_SECRET_ACCESS_KEY]
                    .clone()
                    .into(),
                path_style: true,
            };
            let client = switchboard::attachments::s3::S3Client::new(s3).unwrap();
            client.get(&key).await.unwrap().map(|b| b.to_vec())
        }
        None => std::fs::read(app.setup.data_path().join("attachments").join(key)).ok(),
    }
}

/// The lifecycle: the organization's quota, uploads never sent swept as
/// orphans, and a conversation's files deleted with it, from the storage
/// itself.
async fn attachments_lifecycle(kind: EngineKind) {
    let setup = Setup::new(kind).set(switchboard::config::ENV_ATTACHMENT_QUOTA_MB, "1");
    let setup = match kind {
        EngineKind::Embedded => setup,
        _ => setup.with_s3().await,
    };
    let app = TestApp::spawn_with(setup).await;
    let admin = app.admin().await;
    let modes = json!({ "fileUpload": { "enableAttachments": true, "modes": [
        { "fileTypes": ["text/plain", "image/png"], "maxFileSizeKB": 4096 },
    ] } });
    let configuration = published(&app, &admin, configuration(None, modes)).await;
    let id = deployment(
        &app,
        &admin,
        &configuration,
        json!({ "allowedAppHosts": [APP_SOCKET_HOST, APP_DOMAIN] }),
    )
    .await;
    let mut sdk = SdkClient::open(&app, &id).await;
    sdk.configure(false).await;

    // Past the quota (1 MB for the organization), however the mode allows.
    let refused = url_error(
        &sdk.request(on_attachment(
            &sdk,
            "huge",
            "huge.txt",
            "text/plain",
            2 * 1024 * 1024,
        ))
        .await,
    );
    assert_eq!(refused.error_code, 4002);
    assert!(
        refused.error_message.contains("quota"),
        "{}",
        refused.error_message
    );

    // A file over the node's JSON body limit (64 KB) but within the mode
    // and the quota goes through.
    let big = vec![b'a'; 300 * 1024];
    let url = presigned(
        &sdk.request(on_attachment(
            &sdk,
            "big",
            "big.txt",
            "text/plain",
            big.len(),
        ))
        .await,
    );
    assert_eq!(
        upload(&app, &url, "text/plain", &big).await.status(),
        StatusCode::OK
    );
    sdk.next_of("UploadSuccessEvent").await;
    assert_eq!(
        sdk.request(by_id(&sdk, "deleteAttachment", "big")).await["class"],
        "AttachmentDeletedResponse"
    );

    // An upload never sent is swept once the orphan time has passed.
    let orphan_ref = uploaded(&app, &mut sdk, "orphan", "a.txt", "text/plain", b"hello").await;
    assert_eq!(
        stored_bytes(&app, &orphan_ref).await.as_deref(),
        Some(&b"hello"[..])
    );
    let routing = &app.state().routing;
    routing.sweep_retention(chrono::Utc::now()).await.unwrap();
    assert!(
        stored_bytes(&app, &orphan_ref).await.is_some(),
        "not yet an orphan"
    );
    routing
        .sweep_retention(chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(stored_bytes(&app, &orphan_ref).await, None);
    assert_eq!(
        url_error(&sdk.request(by_id(&sdk, "getAttachment", "orphan")).await).error_code,
        4009
    );

    // A sent file goes with its conversation.
    let kept_ref = uploaded(&app, &mut sdk, "kept", "b.png", "image/png", PNG).await;
    let echo = sdk.request(with_attachment(&sdk, "kept")).await;
    let conversation: Uuid = echo["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    routing
        .sweep_retention(chrono::Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(
        stored_bytes(&app, &kept_ref).await.as_deref(),
        Some(PNG),
        "a sent file is no orphan"
    );
    routing
        .erase_conversation(app.org(), conversation, None, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(stored_bytes(&app, &kept_ref).await, None);
}

on_both_engines!(attachments_lifecycle);
