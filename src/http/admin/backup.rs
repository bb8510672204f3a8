//! `POST /api/v2/backup`: a consistent copy of the embedded engine's
//! database, taken while the node serves (see docs/upgrade.md). Operator
//! only: it holds every organization's records. The master key is not in
//! it (the API never answers a secret): `switchboard backup` copies the key
//! file beside it on the node's machine.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::engine::Engine;
use crate::http::error::ApiError;
use crate::http::extract::Caller;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(backup))
}

/// Answers the embedded engine's database as of one instant (a redb file,
/// owner-only once written). On Redis, back up Redis itself (409).
#[utoipa::path(post, path = "/api/v2/backup", tag = "operations", operation_id = "backupDatabase",
    security(("bearer" = [])),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>,
            description = "the database file"),
        (status = 401, body = crate::http::error::ErrorBody),
        (status = 403, body = crate::http::error::ErrorBody, description = "not the operator's bootstrap token"),
        (status = 409, body = crate::http::error::ErrorBody, description = "the node runs on Redis"),
        (status = 503, body = crate::http::error::ErrorBody)))]
async fn backup(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_operator()?;
    let Engine::Embedded(engine) = state.store.engine() else {
        return Err(ApiError::conflict(
            "backup_not_supported",
            "this node runs on Redis: back up Redis (RDB or AOF) and the master key instead",
        ));
    };
    let dir = engine
        .path()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let dest = dir.join(format!(".backup-{}.redb", uuid::Uuid::new_v4()));
    let copied = engine.backup_to(dest.clone()).await;
    let opened = match copied {
        Ok(()) => tokio::fs::File::open(&dest)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // Open, the file stays readable until the answer is sent; its name goes
    // now, so no copy is left behind whatever happens to the request.
    let _ = tokio::fs::remove_file(&dest).await;
    let file = opened.map_err(|cause| ApiError::unavailable().caused_by(true, cause))?;
    let length = file.metadata().await.ok().map(|m| m.len());
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"switchboard.redb\"".to_owned(),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response();
    if let Some(length) = length
        && let Ok(value) = header::HeaderValue::from_str(&length.to_string())
    {
        response.headers_mut().insert(header::CONTENT_LENGTH, value);
    }
    Ok(response)
}
