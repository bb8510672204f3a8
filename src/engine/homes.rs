//! What both engines' schema version 2 migrations read from record bodies
//! written before homes existed. The engine treats bodies as opaque
//! everywhere else; this one-off needs the organization they name.

use super::{Collection, Kind, Retired};

/// The `orgId` a record body names.
pub(super) fn org_in(body: &[u8]) -> Option<uuid::Uuid> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Owner {
        org_id: Option<uuid::Uuid>,
    }
    serde_json::from_slice::<Owner>(body).ok()?.org_id
}

/// The conversation a push job body names.
pub(super) fn job_conversation(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Job {
        conversation_id: uuid::Uuid,
    }
    Some(
        serde_json::from_slice::<Job>(body)
            .ok()?
            .conversation_id
            .to_string(),
    )
}

/// `body` with its `orgId` set.
pub(super) fn with_org(body: &[u8], org: uuid::Uuid) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(body) else {
        return body.to_vec();
    };
    fields.insert(
        "orgId".to_owned(),
        serde_json::Value::String(org.to_string()),
    );
    serde_json::to_vec(&fields).unwrap_or_else(|_| body.to_vec())
}

/// The name a list has in `org`'s home: the lists that spanned
/// organizations become each organization's own (an organization's record
/// its own list of one), the others keep theirs.
pub(super) fn renamed(name: &str, org: uuid::Uuid) -> String {
    if name == Collection::Organizations.name() {
        return Collection::Org {
            org,
            kind: Kind::Organization,
        }
        .name();
    }
    [Retired::Offered, Retired::OnlineAgents, Retired::PushOutbox]
        .into_iter()
        .find(|retired| Collection::Retired(*retired).name() == name)
        .map_or_else(|| name.to_owned(), |retired| split(retired, org).name())
}

/// The list of `org` that takes over a retired one's entries.
pub(super) fn split(retired: Retired, org: uuid::Uuid) -> Collection {
    match retired {
        Retired::Offered => Collection::Offered(org),
        Retired::OnlineAgents => Collection::OnlineAgents(org),
        Retired::PushOutbox => Collection::PushOutbox(org),
    }
}
