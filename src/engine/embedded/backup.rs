//! A consistent copy of the database while the node serves.
//!
//! redb lets one process hold the file, so a backup cannot open it from
//! outside; the node copies it itself. One read transaction sees one
//! committed state of every table (writes go on meanwhile, into later
//! states), and its rows are written into a fresh database file: the copy
//! is what the node held at one instant, compacted.

use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableTable, TableDefinition, Value, WriteTransaction,
};

use super::{db_err, tables};
use crate::engine::EngineResult;

/// Writes every table as of one read transaction into a new database at
/// `dest` (which must not exist), with owner-only permissions.
pub(super) fn copy_to(db: &Database, dest: &Path) -> EngineResult<()> {
    let read = db.begin_read().map_err(db_err)?;
    let target = Database::create(dest).map_err(db_err)?;
    super::restrict(dest)?;
    let write = target.begin_write().map_err(db_err)?;
    copy(&read, &write, tables::RECORDS)?;
    copy(&read, &write, tables::REFS)?;
    copy(&read, &write, tables::BACKREFS)?;
    copy(&read, &write, tables::CLAIMS)?;
    copy(&read, &write, tables::HELD)?;
    copy(&read, &write, tables::COLLECTIONS)?;
    copy(&read, &write, tables::EPHEMERAL)?;
    copy(&read, &write, tables::LOG)?;
    copy(&read, &write, tables::LOG_DEDUP)?;
    write.commit().map_err(db_err)?;
    Ok(())
}

fn copy<K: Key + 'static, V: Value + 'static>(
    read: &ReadTransaction,
    write: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> EngineResult<()> {
    let source = read.open_table(table).map_err(db_err)?;
    let mut dest = write.open_table(table).map_err(db_err)?;
    for row in source.iter().map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        dest.insert(key.value(), value.value()).map_err(db_err)?;
    }
    Ok(())
}
