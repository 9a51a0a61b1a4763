//! Where a state store's bytes go: redb's own statistics per table of `StateStore`.
//!
//! The table names and key/value types repeat those of `kyso::state::store` (redb opens a
//! table by name and checks the types); a mismatch fails loudly rather than misreporting.

use std::path::Path;

use redb::{MultimapTableDefinition, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct TableStats {
    pub table: &'static str,
    pub entries: u64,
    pub stored_bytes: u64,
    pub metadata_bytes: u64,
    pub fragmented_bytes: u64,
    pub tree_height: u32,
}

/// The state file as a whole.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FileStats {
    /// The file's length. Below 4 GiB redb doubles the file whenever it needs room, so the
    /// length runs up to twice what was ever written; the tail is a hole until used.
    pub file_bytes: u64,
    /// Bytes the file occupies on disk (allocated blocks): what was written, holes left out.
    pub disk_bytes: u64,
    /// Bytes of the pages redb holds allocated (every table, its own trees and free lists).
    pub allocated_bytes: u64,
}

/// Bytes `path` occupies on disk (allocated blocks, holes left out).
pub fn disk_bytes(path: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

/// Opens `state.redb` (no node may be running on it; nothing is written) and reports the
/// file and every table.
pub fn table_stats(path: &Path) -> anyhow::Result<(FileStats, Vec<TableStats>)> {
    let file_bytes = std::fs::metadata(path)?.len();
    let disk_bytes = disk_bytes(path)?;
    let db = redb::Database::open(path)?;
    let allocated_bytes = {
        // redb reports allocated pages only from a write transaction; it is aborted.
        let txn = db.begin_write()?;
        let stats = txn.stats()?;
        let bytes = stats.allocated_pages() * stats.page_size() as u64;
        txn.abort()?;
        bytes
    };
    let file = FileStats { file_bytes, disk_bytes, allocated_bytes };
    let txn = db.begin_read()?;
    let mut found = Vec::new();
    // Tables a data directory of an earlier release lacks are left out of the report.
    fn row(table: &'static str, entries: u64, stats: redb::TableStats) -> TableStats {
        TableStats {
            table,
            entries,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
            tree_height: stats.tree_height(),
        }
    }
    macro_rules! table {
        ($name:literal, $key:ty, $value:ty) => {{
            match txn.open_table(TableDefinition::<$key, $value>::new($name)) {
                Ok(table) => found.push(row($name, table.len()?, table.stats()?)),
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }};
    }
    macro_rules! multimap {
        ($name:literal, $key:ty, $value:ty) => {{
            match txn.open_multimap_table(MultimapTableDefinition::<$key, $value>::new($name)) {
                Ok(table) => found.push(row($name, table.len()?, table.stats()?)),
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }};
    }
    table!("meta", &str, u64);
    table!("requests", &str, &[u8]);
    table!("request_details", (i64, &str), ());
    table!("dossiers", &str, &[u8]);
    table!("signers", &str, &[u8]);
    table!("certifications", &[u8], &[u8]);
    multimap!("certifications_by_document", &[u8], &[u8]);
    table!("blobs", &[u8], u64);
    multimap!("blob_agencies", &[u8], &str);
    table!("blob_arrivals", u64, &[u8]);
    table!("tlog_nodes", (u8, u64), &[u8]);
    table!("tlog_node_buckets", (u8, u64), &[u8]);
    table!("tlog_leaf_buckets", u64, &[u8]);
    table!("tlog_leaves", u64, &[u8]);
    table!("certification_leaves", &[u8], u64);
    table!("security", &str, &[u8]);
    table!("register", &str, &[u8]);
    table!("statistics", (i64, &str), &[u8]);
    Ok((file, found))
}
