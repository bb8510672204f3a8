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

use super::{Store, StoreError};
use crate::engine::{Collection, Commit, Expect, Kind, Put, RecordKey};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

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
pub const MIGRATIONS: &[Migration] = &[Migration {
    to: 1,
    name: "stamp the schema version (records written before versioning are already version 1)",
    run: |_store| Box::pin(async { Ok(()) }),
}];

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
    let key = RecordKey::new(Kind::Setting, STAMP_SETTING);
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
            key: RecordKey::new(Kind::Setting, STAMP_SETTING),
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
                    key: RecordKey::new(Kind::Setting, "test-mark"),
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
        let mark = RecordKey::new(Kind::Setting, "test-mark");
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

    #[test]
    fn the_registry_ends_at_this_builds_version() {
        assert_eq!(MIGRATIONS.last().map(|m| m.to), Some(SCHEMA_VERSION));
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to as usize, i + 1, "migrations go up one at a time");
        }
    }
}
