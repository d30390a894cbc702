//! Tool calls waiting for a person (table `approvals`): created once per
//! call, decided once; and the tools someone chose to always allow in a
//! session (table `session_allows`).

use omp_discord_core::approval::ApprovalState;
use rusqlite::params;

use super::{Outbox, OutboxError, parse_column};

/// A tool call waiting for (or given) a person's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Its id (in the buttons' `custom_id`).
    pub approval_id: i64,
    /// The session.
    pub session_id: String,
    /// The tool.
    pub tool: String,
    /// The tool's input, as JSON.
    pub input: String,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When it expires, in ms since the epoch.
    pub deadline_ms: i64,
}

const APPROVAL_COLUMNS: &str = "approval_id, session_id, tool, input, state, decided_by, deadline_ms";

fn read_approval(row: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        approval_id: row.get(0)?,
        session_id: row.get(1)?,
        tool: row.get(2)?,
        input: row.get(3)?,
        state: parse_column(row, 4)?,
        decided_by: row.get(5)?,
        deadline_ms: row.get(6)?,
    })
}

impl Outbox {
    /// The approval for a tool call, creating it (pending, expiring at
    /// `deadline_ms`) if it does not exist; the flag says whether it is new.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn approval_for(
        &mut self,
        session_id: &str,
        tool_call_id: &str,
        tool: &str,
        input: &str,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<(Approval, bool), OutboxError> {
        let added = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO approvals (session_id, tool_call_id, tool, input, created_ms, deadline_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![session_id, tool_call_id, tool, input, now_ms, deadline_ms])?
            == 1;
        let approval = self.conn.query_row(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE session_id = ?1 AND tool_call_id = ?2"),
            [session_id, tool_call_id],
            read_approval,
        )?;
        Ok((approval, added))
    }

    /// An approval by id.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn approval(&self, approval_id: i64) -> Result<Option<Approval>, OutboxError> {
        let mut statement =
            self.conn.prepare_cached(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = ?1"))?;
        let mut rows = statement.query_map([approval_id], read_approval)?;
        Ok(rows.next().transpose()?)
    }

    /// Decides a pending approval; false when it was no longer pending (a
    /// stale click, or it expired), so only the first decision counts.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn decide_approval(
        &mut self,
        approval_id: i64,
        state: ApprovalState,
        decided_by: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE approvals SET state = ?2, decided_by = ?3, decided_ms = ?4
             WHERE approval_id = ?1 AND state = 'pending'",
            )?
            .execute(params![approval_id, state.as_str(), decided_by, now_ms])?;
        Ok(changed == 1)
    }

    /// Who chose to always allow `tool` in the session, if someone did.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn always_allowed(&self, session_id: &str, tool: &str) -> Result<Option<String>, OutboxError> {
        let mut statement =
            self.conn.prepare_cached("SELECT allowed_by FROM session_allows WHERE session_id = ?1 AND tool = ?2")?;
        let mut rows = statement.query_map([session_id, tool], |row| row.get(0))?;
        Ok(rows.next().transpose()?)
    }

    /// Always allows `tool` in the session from now on.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn allow_always(&mut self, session_id: &str, tool: &str, by: &str, now_ms: i64) -> Result<(), OutboxError> {
        self.conn.prepare_cached("INSERT OR IGNORE INTO session_allows (session_id, tool, allowed_by, created_ms) VALUES (?1, ?2, ?3, ?4)")?.execute(params![session_id, tool, by, now_ms],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::open;

    #[test]
    fn approvals_are_created_once_and_decided_once() {
        let (_dir, mut outbox) = open();
        let (first, new) = outbox.approval_for("s", "call_1", "bash", "{}", 0, 1000).unwrap();
        assert!(new);
        let (again, new) = outbox.approval_for("s", "call_1", "bash", "{}", 5, 2000).unwrap();
        assert!(!new);
        assert_eq!((again.approval_id, again.deadline_ms), (first.approval_id, 1000));
        assert!(outbox.decide_approval(first.approval_id, ApprovalState::Approved, Some("ana"), 10).unwrap());
        assert!(
            !outbox.decide_approval(first.approval_id, ApprovalState::Denied, Some("bob"), 11).unwrap(),
            "a stale click"
        );
        let decided = outbox.approval(first.approval_id).unwrap().unwrap();
        assert_eq!((decided.state, decided.decided_by.as_deref()), (ApprovalState::Approved, Some("ana")));
    }
}
