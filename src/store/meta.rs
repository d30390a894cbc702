//! Small facts the sidecar remembers (table `meta`), e.g. the hash of the
//! registered slash commands.

use super::{Outbox, OutboxError};

impl Outbox {
    /// A remembered fact.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn meta(&self, key: &str) -> Result<Option<String>, OutboxError> {
        let mut statement = self.conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        let mut rows = statement.query_map([key], |row| row.get(0))?;
        Ok(rows.next().transpose()?)
    }

    /// Remembers a fact.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), OutboxError> {
        self.conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute([key, value])?;
        Ok(())
    }

    /// Forgets a fact.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn clear_meta(&mut self, key: &str) -> Result<(), OutboxError> {
        self.conn.execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }
}
