//! The sidecar's durable state, in one SQLite file: the outbox of messages to
//! Discord, each session's thread, replies, approvals and questions.
//!
//! Every accepted message is journaled before the client hears "accepted",
//! and leaves the journal only once Discord has answered with a message id
//! (or refused it for good).
//!
//! A send is claimed with a nonce stored in its row. After a crash the same row
//! is sent again with the same nonce, and Discord's `enforce_nonce` returns the
//! message created the first time instead of posting twice. (Discord keeps
//! nonces for a few minutes; a sidecar down for longer may post a duplicate,
//! never lose one.)
//!
//! WAL with `synchronous = NORMAL`: a committed row survives the process being
//! killed at any point; only a power loss can drop the last transactions.
//!
//! One SQLite connection holds every table the sidecar keeps; each file adds
//! the methods of its tables to [`Outbox`].
//!
//! # Layout
//!
//! - `migrations`: the schema, one migration per version, and upgrading a file.
//! - `queue`: the journal of messages to send (`outbox`) and the keys of
//!   messages edited later (`keyed`): claim, deliver, fail, count.
//! - `sessions`: each OMP session's thread (`sessions`).
//! - `inbound`: replies from Discord until the session's shim took them (`inbound`).
//! - `approvals`: tool calls waiting for a person (`approvals`), and tools
//!   always allowed in a session (`session_allows`).
//! - `asks`: questions to the people in a thread, and their answers (`asks`).
//! - `meta`: small facts the sidecar remembers (`meta`).
//! - `retention`: what is removed once it no longer matters, and giving the space back.
//! - this module: opening the file, transactions, and the error type.

mod approvals;
mod asks;
mod inbound;
mod meta;
mod migrations;
mod queue;
mod retention;
mod sessions;

use std::path::Path;

use rusqlite::Connection;

pub use approvals::Approval;
pub use asks::Ask;
pub use inbound::Inbound;
pub use queue::{Journaled, Pending};
pub use retention::Pruned;
pub use sessions::SessionThread;

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite failed (disk full, read-only directory, corrupt file …).
    #[error("the outbox database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer omp-discord.
    #[error("the outbox schema is version {found}, newer than this build's {supported}; upgrade omp-discord")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Version this build knows.
        supported: i64,
    },
}

/// The journal.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
}

impl Outbox {
    /// Opens (creating and migrating) the outbox at `path`.
    ///
    /// # Errors
    ///
    /// When SQLite cannot open or migrate the file.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        let mut conn = Connection::open(path)?;
        // Takes effect on a new file; an older file is converted once below.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every hot statement stays prepared (the default cache holds 16).
        conn.set_prepared_statement_cache_capacity(64);
        migrations::migrate(&mut conn)?;
        let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
        if auto_vacuum != 2 {
            // A file from before retention: one full VACUUM switches it to incremental.
            tracing::info!(path = %path.display(), "converting the state file to incremental vacuum (once)");
            if let Err(err) = conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;") {
                tracing::warn!(error = %err, "cannot convert the state file now; it keeps its size until a later start");
            }
        }
        Ok(Self { conn })
    }

    /// Runs `steps` as one transaction: all of them are journaled, or none
    /// (and one commit instead of one per step).
    ///
    /// # Errors
    ///
    /// The first step's error (everything is rolled back), or the commit's.
    pub fn atomically<T>(&mut self, steps: impl FnOnce(&mut Self) -> Result<T, OutboxError>) -> Result<T, OutboxError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match steps(self) {
            Ok(value) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(value),
                // A failed COMMIT (a full disk) can leave the transaction open.
                Err(err) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(err.into())
                }
            },
            Err(err) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }
}

/// Reads a TEXT column into a type that parses from it (a state enum).
fn parse_column<T>(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(index)?;
    text.parse()
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh outbox in a temporary directory (kept while the guard lives).
    pub(super) fn open() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.sqlite3")).unwrap();
        (dir, outbox)
    }

    #[test]
    fn a_read_only_directory_is_a_clear_error() {
        let err = Outbox::open(Path::new("/proc/omp-discord-outbox.sqlite3")).unwrap_err();
        assert!(err.to_string().starts_with("the outbox database failed"), "{err}");
    }
}
