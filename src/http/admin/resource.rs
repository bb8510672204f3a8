//! The shared shape of admin resources: list, read, create, replace, delete,
//! each checked against the caller's organization and role.
//!
//! A resource module describes how its input becomes a record and how a
//! record is shown; the handlers here do the rest the same way for all.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::audit::{entry, shown};
use crate::app::AppState;
use crate::engine::{Commit, Expect, Put};
use crate::http::PagedList;
use crate::http::error::ApiError;
use crate::http::extract::{Caller, Id, Json, JsonOut, Paging};
use crate::store::audit::AuditAction;
use crate::store::records::Meta;
use crate::store::types::{OrgId, Role};
use crate::store::{Record, StoreError, collection_of};

pub(crate) trait Resource: Record + Clone + 'static {
    type Input: DeserializeOwned + Send + 'static;
    type View: Serialize + Send + 'static;

    /// The role that may read. Writes always need admin.
    const READ_ROLE: Role;

    /// The `version` an update carries.
    fn input_version(input: &Self::Input) -> Option<u64>;

    /// Turns validated input into a record. `existing` is the stored record
    /// on update (so write-only fields can be kept), `None` on create.
    fn build(
        input: Self::Input,
        org: OrgId,
        meta: Meta,
        existing: Option<&Self>,
        state: &AppState,
    ) -> Result<Self, ApiError>;

    fn view(self, state: &AppState) -> Self::View;

    /// Records written in the same commit as this one's deletion: what the
    /// retention sweep needs to find what the record leaves behind.
    fn left_behind(&self, _now: DateTime<Utc>) -> Result<Vec<Put>, StoreError> {
        Ok(Vec::new())
    }
}

pub(crate) async fn list<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Paging(page): Paging,
) -> Result<JsonOut<PagedList<R::View>>, ApiError> {
    let principal = caller.require(R::READ_ROLE)?;
    let listing = state
        .store
        .list::<R>(&collection_of(R::KIND, principal.org), page)
        .await?;
    Ok(axum::Json(PagedList::new(listing, page, |r: R| {
        r.view(&state)
    })))
}

pub(crate) async fn get<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<JsonOut<R::View>, ApiError> {
    let principal = caller.require(R::READ_ROLE)?;
    let record = state.store.get::<R>(principal.org, id).await?;
    Ok(axum::Json(record.view(&state)))
}

pub(crate) async fn create<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<R::Input>,
) -> Result<(StatusCode, JsonOut<R::View>), ApiError> {
    let principal = caller.require(Role::Admin)?;
    let mut record = R::build(input, principal.org, Meta::new(Utc::now()), None, &state)?;
    let after = shown(&record.clone().view(&state));
    let audit = entry(
        principal,
        AuditAction::Create,
        R::KIND,
        record.meta().id,
        None,
        after.as_ref(),
    );
    let put = state.store.prepare(&record, Expect::Absent).await?;
    state.store.enter_directory(&record).await?;
    state
        .store
        .commit(Commit::new().put(put).put(audit.put()?))
        .await?;
    record.meta_mut().version = 1;
    Ok((StatusCode::CREATED, axum::Json(record.view(&state))))
}

pub(crate) async fn update<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Json(input): Json<R::Input>,
) -> Result<JsonOut<R::View>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let expected = R::input_version(&input)
        .ok_or_else(|| ApiError::invalid("version is required: send the version you read"))?;
    let existing = state.store.get::<R>(principal.org, id).await?;
    let mut meta = existing.meta().clone();
    meta.date_modified = Utc::now();
    let mut record = R::build(input, principal.org, meta, Some(&existing), &state)?;
    let before = shown(&existing.view(&state));
    let after = shown(&record.clone().view(&state));
    let audit = entry(
        principal,
        AuditAction::Update,
        R::KIND,
        id,
        before.as_ref(),
        after.as_ref(),
    );
    let put = state
        .store
        .prepare(&record, Expect::Version(expected))
        .await?;
    state
        .store
        .commit(Commit::new().put(put).put(audit.put()?))
        .await?;
    record.meta_mut().version = expected + 1;
    Ok(axum::Json(record.view(&state)))
}

pub(crate) async fn delete<R: Resource>(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let record = state.store.get::<R>(principal.org, id).await?;
    let key = record.key();
    let version = record.meta().version;
    let left = record.left_behind(Utc::now())?;
    let before = shown(&record.clone().view(&state));
    let audit = entry(
        principal,
        AuditAction::Delete,
        R::KIND,
        id,
        before.as_ref(),
        None,
    );
    let commit = left.into_iter().fold(
        Commit::new()
            .delete(key, Expect::Version(version))
            .put(audit.put()?),
        Commit::put,
    );
    state.store.commit(commit).await?;
    state.store.leave_directory(&record).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Generates the five handlers of a resource with their OpenAPI
/// descriptions, and its router.
macro_rules! crud_routes {
    (
        resource = $res:ty,
        input = $input:ty,
        view = $view:ty,
        path = $path:literal,
        item = $item:literal,
        tag = $tag:literal $(,)?
    ) => {
        use $crate::http::PagedList;

        #[utoipa::path(get, path = $path, tag = $tag, security(("bearer" = [])),
            params(("pageNumber" = Option<u64>, Query), ("pageSize" = Option<u64>, Query)),
            responses((status = 200, body = PagedList<$view>),
                (status = 401, body = $crate::http::error::ErrorBody),
                (status = 403, body = $crate::http::error::ErrorBody)))]
        async fn list(
            state: axum::extract::State<$crate::app::AppState>,
            caller: $crate::http::extract::Caller,
            paging: $crate::http::extract::Paging,
        ) -> Result<axum::Json<PagedList<$view>>, $crate::http::error::ApiError> {
            $crate::http::admin::resource::list::<$res>(state, caller, paging).await
        }

        #[utoipa::path(post, path = $path, tag = $tag, security(("bearer" = [])),
            request_body = $input,
            responses((status = 201, body = $view),
                (status = 400, body = $crate::http::error::ErrorBody),
                (status = 401, body = $crate::http::error::ErrorBody),
                (status = 403, body = $crate::http::error::ErrorBody),
                (status = 409, body = $crate::http::error::ErrorBody),
                (status = 413, body = $crate::http::error::ErrorBody),
                (status = 422, body = $crate::http::error::ErrorBody)))]
        async fn create(
            state: axum::extract::State<$crate::app::AppState>,
            caller: $crate::http::extract::Caller,
            input: $crate::http::extract::Json<$input>,
        ) -> Result<(axum::http::StatusCode, axum::Json<$view>), $crate::http::error::ApiError> {
            $crate::http::admin::resource::create::<$res>(state, caller, input).await
        }

        #[utoipa::path(get, path = $item, tag = $tag, security(("bearer" = [])),
            params(("id" = uuid::Uuid, Path)),
            responses((status = 200, body = $view),
                (status = 404, body = $crate::http::error::ErrorBody)))]
        async fn get(
            state: axum::extract::State<$crate::app::AppState>,
            caller: $crate::http::extract::Caller,
            id: $crate::http::extract::Id,
        ) -> Result<axum::Json<$view>, $crate::http::error::ApiError> {
            $crate::http::admin::resource::get::<$res>(state, caller, id).await
        }

        #[utoipa::path(put, path = $item, tag = $tag, security(("bearer" = [])),
            params(("id" = uuid::Uuid, Path)),
            request_body = $input,
            responses((status = 200, body = $view),
                (status = 404, body = $crate::http::error::ErrorBody),
                (status = 409, body = $crate::http::error::ErrorBody, description = "stale version"),
                (status = 422, body = $crate::http::error::ErrorBody)))]
        async fn update(
            state: axum::extract::State<$crate::app::AppState>,
            caller: $crate::http::extract::Caller,
            id: $crate::http::extract::Id,
            input: $crate::http::extract::Json<$input>,
        ) -> Result<axum::Json<$view>, $crate::http::error::ApiError> {
            $crate::http::admin::resource::update::<$res>(state, caller, id, input).await
        }

        #[utoipa::path(delete, path = $item, tag = $tag, security(("bearer" = [])),
            params(("id" = uuid::Uuid, Path)),
            responses((status = 204),
                (status = 404, body = $crate::http::error::ErrorBody),
                (status = 409, body = $crate::http::error::ErrorBody, description = "in use")))]
        async fn delete(
            state: axum::extract::State<$crate::app::AppState>,
            caller: $crate::http::extract::Caller,
            id: $crate::http::extract::Id,
        ) -> Result<axum::http::StatusCode, $crate::http::error::ApiError> {
            $crate::http::admin::resource::delete::<$res>(state, caller, id).await
        }

        pub fn router() -> utoipa_axum::router::OpenApiRouter<$crate::app::AppState> {
            utoipa_axum::router::OpenApiRouter::new()
                .routes(utoipa_axum::routes!(list, create))
                .routes(utoipa_axum::routes!(get, update, delete))
        }
    };
}
pub(crate) use crud_routes;

/// Checks a display name: present, trimmed, not too long, and one line of
/// plain text: names are shown to agents and admins and written to logs,
/// where a control character (a newline forging a log line, an escape
/// sequence for a terminal) or a bidirectional override (text that reads
/// differently from what it is) would be an attack, never a name.
pub(crate) fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    if trimmed.chars().any(is_hostile_char) {
        return Err(ApiError::invalid(format!(
            "{field} must not contain control characters, line breaks or bidirectional overrides"
        )));
    }
    if trimmed.chars().count() > 200 {
        return Err(ApiError::invalid(format!(
            "{field} is longer than 200 characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// C0 and C1 controls (with tab and newline), the Unicode line and
/// paragraph separators, and the bidirectional embeddings, overrides and
/// isolates.
fn is_hostile_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Checks an integer setting against its range.
pub(crate) fn in_range(
    field: &str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ApiError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be between {} and {}",
            range.start(),
            range.end()
        )))
    }
}

/// For an optional field that an update may leave out: absent is `None`
/// (keep what is stored), `null` is `Some(None)` (clear it), a value is
/// `Some(Some(value))`. Use with `#[serde(default, deserialize_with =
/// "present")]`.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A retention in days as an admin sets it: kept when left out, cleared
/// (back to the default) by `null`, else checked against its range.
pub(crate) fn retention_days(
    given: Option<Option<u32>>,
    stored: Option<u32>,
) -> Result<Option<u32>, ApiError> {
    match given {
        None => Ok(stored),
        Some(None) => Ok(None),
        Some(Some(days)) => {
            in_range("retentionDays", days, 1..=crate::config::MAX_RETENTION_DAYS).map(Some)
        }
    }
}
