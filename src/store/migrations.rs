//! Record schema versions: the version the stored records are written in,
//! stamped in the engine, and the migrations that bring an older store up
//! to the version this build writes. They run at start, before the node
//! serves, on both engines.
//!
//! A store from before versioning has no stamp and counts as version 0. A
//! store stamped with a version newer than this build knows is refused: an
//! older binary must not write records it does not understand (see
//! docs/upgrade.md for rolling back).
//!
//! Nodes sharing one Redis may start together and run the same migration
//! at once, so every migration must be idempotent (running it twice leaves
//! the store as running it once); the stamp is then written with a version
//! check, and the loser of that race reads the winner's stamp.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use super::records::{ApiClient, Deployment, Organization};
use super::types::OrgId;
use super::{Store, StoreError, collection_of};
use crate::engine::{Collection, Commit, Expect, Kind, Put, RecordKey};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 2;

/// The setting record that holds the stamp.
const STAMP_SETTING: &str = "schema-version";

/// What a migration's work is: a future over the store.
pub type MigrationRun =
    for<'a> fn(&'a Store) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// One step: brings a store at version `to - 1` to version `to`.
#[derive(Clone, Copy)]
pub struct Migration {
    pub to: u32,
    /// What it does, for the start-up log and docs/upgrade.md.
    pub name: &'static str,
    pub run: MigrationRun,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("to", &self.to)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every migration, in order; the last one's `to` is [`SCHEMA_VERSION`].
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        name: "stamp the schema version (records written before versioning are already version 1)",
        run: |_store| Box::pin(async { Ok(()) }),
    },
    Migration {
        to: 2,
        name: "records live in their organization's home; deployments and API clients enter the directory",
        run: |store| Box::pin(homes(store)),
    },
];

/// Version 2: each organization's records in its own home (its own Redis
/// Cluster slot), the installation's list of organizations in the
/// directory, and the kinds found by id alone listed there too.
///
/// Organizations enter the directory before anything moves, so a node that
/// dies midway finds every one of them listed when it runs this again.
async fn homes(store: &Store) -> Result<(), StoreError> {
    for org in organizations_listed_before_homes(store).await? {
        store.enter_directory(&org).await?;
    }
    let moved = store.engine().move_to_homes().await?;
    tracing::info!(moved, "records moved to their organizations' homes");
    for org in store.all_organizations().await? {
        let org = OrgId(org.meta.id);
        for deployment in store
            .list_all::<Deployment>(&collection_of(Kind::Deployment, org))
            .await?
        {
            store.enter_directory(&deployment).await?;
        }
        for client in store
            .list_all::<ApiClient>(&collection_of(Kind::ApiClient, org))
            .await?
        {
            store.enter_directory(&client).await?;
        }
    }
    Ok(())
}

/// The organization records version 1 listed installation-wide (the list
/// now holds the directory's entries instead).
async fn organizations_listed_before_homes(store: &Store) -> Result<Vec<Organization>, StoreError> {
    const PAGE: u64 = 100;
    let mut found = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .engine()
            .list(&Collection::Organizations, offset, PAGE)
            .await?;
        offset += PAGE;
        for stored in page.records {
            if stored.key.kind == Kind::Organization {
                found.push(super::decode::<Organization>(stored)?);
            }
        }
        if offset >= page.total {
            return Ok(found);
        }
    }
}

/// Why the records could not be brought to this build's schema.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "the stored records are schema version {stored}, newer than this build's {known}: \
         run the switchboard version that wrote them (or restore a backup taken before the upgrade)"
    )]
    Newer { stored: u32, known: u32 },
    #[error("migration to schema version {to} ({name}) failed: {source}")]
    Failed {
        to: u32,
        name: &'static str,
        source: StoreError,
    },
    #[error("schema version stamp: {0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stamp {
    version: u32,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub from: u32,
    pub to: u32,
    /// The migrations that ran, by their `to` version.
    pub ran: Vec<u32>,
}

/// The stored schema version (0 when the store has no stamp) and the stamp
/// record's own version, for the check on write.
pub async fn stored_version(store: &Store) -> Result<(u32, Option<u64>), StoreError> {
    let key = RecordKey::installation(Kind::Setting, STAMP_SETTING);
    match store.raw_get(&key).await? {
        None => Ok((0, None)),
        Some(record) => {
            let stamp: Stamp =
                serde_json::from_slice(&record.body).map_err(|e| StoreError::Corrupt {
                    key,
                    message: e.to_string(),
                })?;
            Ok((stamp.version, Some(record.version)))
        }
    }
}

/// Brings the store to [`SCHEMA_VERSION`] with [`MIGRATIONS`].
pub async fn migrate(store: &Store) -> Result<Migrated, MigrationError> {
    migrate_with(store, MIGRATIONS).await
}

/// Brings the store to the last version of `migrations`, running those
/// above the stored version in order and stamping after each, so that a
/// node that dies mid-way resumes where it stopped.
pub async fn migrate_with(
    store: &Store,
    migrations: &[Migration],
) -> Result<Migrated, MigrationError> {
    let known = migrations.last().map_or(0, |m| m.to);
    let (from, mut stamp_version) = stored_version(store).await?;
    if from > known {
        return Err(MigrationError::Newer {
            stored: from,
            known,
        });
    }
    let mut current = from;
    let mut ran = Vec::new();
    for migration in migrations.iter().filter(|m| m.to > from) {
        tracing::info!(
            to = migration.to,
            name = migration.name,
            "migrating records"
        );
        (migration.run)(store)
            .await
            .map_err(|source| MigrationError::Failed {
                to: migration.to,
                name: migration.name,
                source,
            })?;
        match write_stamp(store, migration.to, stamp_version).await {
            Ok(()) => {}
            // Another node stamped meanwhile: it ran the same idempotent
            // migrations; carry on from what it wrote.
            Err(StoreError::Conflict(_) | StoreError::Stale { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let (now, version) = stored_version(store).await?;
        stamp_version = version;
        current = now.max(migration.to);
        ran.push(migration.to);
    }
    Ok(Migrated {
        from,
        to: current,
        ran,
    })
}

async fn write_stamp(store: &Store, version: u32, expect: Option<u64>) -> Result<(), StoreError> {
    let body = super::encode(&Stamp { version })?;
    store
        .commit(Commit::new().put(Put {
            key: RecordKey::installation(Kind::Setting, STAMP_SETTING),
            expect: expect.map_or(Expect::Absent, Expect::Version),
            body,
            collection: Collection::Settings,
            order: 0,
            refs: Vec::new(),
            unique: Vec::new(),
        }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EmbeddedEngine, Engine};
    use crate::store::records::Meta;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        (dir, Store::new(Engine::Embedded(engine)))
    }

    /// A migration that leaves a mark, so the test sees it ran (and how
    /// often: a second run would find the mark and fail).
    fn mark(store: &Store) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>> {
        Box::pin(async move {
            store
                .commit(Commit::new().put(Put {
                    key: RecordKey::installation(Kind::Setting, "test-mark"),
                    expect: Expect::Absent,
                    body: b"{}".to_vec(),
                    collection: Collection::Settings,
                    order: 0,
                    refs: Vec::new(),
                    unique: Vec::new(),
                }))
                .await
        })
    }

    #[tokio::test]
    async fn an_unstamped_store_is_migrated_once_and_stamped() {
        let (_dir, store) = store().await;
        assert_eq!(stored_version(&store).await.unwrap().0, 0);
        let registry = [
            MIGRATIONS[0],
            Migration {
                to: 2,
                name: "mark",
                run: mark,
            },
        ];
        let done = migrate_with(&store, &registry).await.unwrap();
        assert_eq!(
            done,
            Migrated {
                from: 0,
                to: 2,
                ran: vec![1, 2]
            }
        );
        assert_eq!(stored_version(&store).await.unwrap().0, 2);
        let mark = RecordKey::installation(Kind::Setting, "test-mark");
        assert!(store.raw_get(&mark).await.unwrap().is_some());
        // A restart runs nothing more.
        let again = migrate_with(&store, &registry).await.unwrap();
        assert!(again.ran.is_empty(), "{again:?}");
    }

    #[tokio::test]
    async fn a_store_from_a_newer_build_is_refused() {
        let (_dir, store) = store().await;
        write_stamp(&store, SCHEMA_VERSION + 1, None).await.unwrap();
        let err = migrate(&store).await.unwrap_err();
        assert!(matches!(err, MigrationError::Newer { .. }), "{err}");
    }

    /// Version 1 on the embedded engine: an organization in the list of
    /// organizations, an offer and a push job in the lists that spanned
    /// organizations. Version 2 lists the organization in the directory,
    /// gives the offer and the job their organization's lists, and the job
    /// its organization.
    #[tokio::test]
    async fn version_one_lists_become_each_organizations() {
        use crate::engine::Retired;
        let (_dir, store) = store().await;
        let engine = store.engine().clone();
        let org = Organization {
            meta: Meta::new(chrono::Utc::now()),
            name: "Old".into(),
            is_default: false,
            staff_integration_id: None,
            retention_days: None,
            limits: Default::default(),
        };
        let id = org.meta.id;
        let conversation = uuid::Uuid::new_v4();
        let put = |kind, key: &str, body: serde_json::Value, list| Put {
            key: RecordKey::installation(kind, key),
            expect: Expect::Absent,
            body: serde_json::to_vec(&body).unwrap(),
            collection: list,
            order: 1,
            refs: Vec::new(),
            unique: Vec::new(),
        };
        engine
            .commit(
                Commit::new()
                    .put(put(
                        Kind::Organization,
                        &id.to_string(),
                        serde_json::to_value(&org).unwrap(),
                        Collection::Organizations,
                    ))
                    .put(put(
                        Kind::Conversation,
                        &conversation.to_string(),
                        serde_json::json!({ "orgId": id }),
                        Collection::Retired(Retired::Offered),
                    ))
                    .put(put(
                        Kind::Setting,
                        &format!("pushjob/{conversation}/1"),
                        serde_json::json!({ "conversationId": conversation, "sequence": 1 }),
                        Collection::Retired(Retired::PushOutbox),
                    )),
            )
            .await
            .unwrap();
        write_stamp(&store, 1, None).await.unwrap();

        let done = migrate(&store).await.unwrap();
        assert_eq!(done.ran, vec![2]);
        let listed = store.all_organizations().await.unwrap();
        assert_eq!(listed.iter().map(|o| o.meta.id).collect::<Vec<_>>(), [id]);
        assert!(
            store
                .find::<Organization>(OrgId(id), id)
                .await
                .unwrap()
                .is_some()
        );
        let offers = engine.list(&Collection::Offered(id), 0, 10).await.unwrap();
        assert_eq!(offers.records.len(), 1);
        assert_eq!(offers.records[0].key.id, conversation.to_string());
        let jobs = engine
            .list(&Collection::PushOutbox(id), 0, 10)
            .await
            .unwrap();
        let job: serde_json::Value = serde_json::from_slice(&jobs.records[0].body).unwrap();
        assert_eq!(job["orgId"], id.to_string());
        for retired in [Retired::Offered, Retired::PushOutbox] {
            let left = engine
                .list(&Collection::Retired(retired), 0, 10)
                .await
                .unwrap();
            assert_eq!(left.total, 0, "{retired:?}");
        }
        // Run again (a node that died midway): nothing changes.
        homes(&store).await.unwrap();
        assert_eq!(store.all_organizations().await.unwrap().len(), 1);
    }

    #[test]
    fn the_registry_ends_at_this_builds_version() {
        assert_eq!(MIGRATIONS.last().map(|m| m.to), Some(SCHEMA_VERSION));
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to as usize, i + 1, "migrations go up one at a time");
        }
    }
}
