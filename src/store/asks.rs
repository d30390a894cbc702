//! Questions the model asked the people in a thread (table `asks`, from
//! `discord_ask`): created once per call, settled once (answered or expired).

use omp_discord_core::ask::AskState;
use rusqlite::params;

use super::{Outbox, OutboxError, parse_column};

/// A question for the people in a session's thread, and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Its id (in the buttons' `custom_id`).
    pub ask_id: i64,
    /// The session.
    pub session_id: String,
    /// The question.
    pub question: String,
    /// Answers offered as buttons (empty: a free-text reply).
    pub options: Vec<String>,
    /// Where it stands.
    pub state: AskState,
    /// The answer.
    pub answer: Option<String>,
    /// Who answered.
    pub answered_by: Option<String>,
    /// When it expires, in ms since the epoch.
    pub deadline_ms: i64,
}

const ASK_COLUMNS: &str = "ask_id, session_id, question, options, state, answer, answered_by, deadline_ms";

fn read_ask(row: &rusqlite::Row<'_>) -> rusqlite::Result<Ask> {
    let options: String = row.get(3)?;
    Ok(Ask {
        ask_id: row.get(0)?,
        session_id: row.get(1)?,
        question: row.get(2)?,
        options: serde_json::from_str(&options).unwrap_or_default(),
        state: parse_column(row, 4)?,
        answer: row.get(5)?,
        answered_by: row.get(6)?,
        deadline_ms: row.get(7)?,
    })
}

impl Outbox {
    /// The question asked by call `call_id` of a session, creating it
    /// (pending, expiring at `deadline_ms`) if it does not exist; the flag
    /// says whether it is new.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn ask_for(
        &mut self,
        session_id: &str,
        call_id: &str,
        question: &str,
        options: &[String],
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<(Ask, bool), OutboxError> {
        let options = serde_json::to_string(options).expect("strings serialize");
        let added = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO asks (session_id, call_id, question, options, created_ms, deadline_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![session_id, call_id, question, options, now_ms, deadline_ms])?
            == 1;
        let ask = self.conn.query_row(
            &format!("SELECT {ASK_COLUMNS} FROM asks WHERE session_id = ?1 AND call_id = ?2"),
            [session_id, call_id],
            read_ask,
        )?;
        Ok((ask, added))
    }

    /// A question by id.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn ask(&self, ask_id: i64) -> Result<Option<Ask>, OutboxError> {
        let mut statement = self.conn.prepare_cached(&format!("SELECT {ASK_COLUMNS} FROM asks WHERE ask_id = ?1"))?;
        let mut rows = statement.query_map([ask_id], read_ask)?;
        Ok(rows.next().transpose()?)
    }

    /// The session's oldest pending question that takes a free-text reply.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn open_free_text_ask(&self, session_id: &str, now_ms: i64) -> Result<Option<Ask>, OutboxError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {ASK_COLUMNS} FROM asks WHERE session_id = ?1 AND state = 'pending' AND options = '[]'
             AND deadline_ms > ?2 ORDER BY ask_id LIMIT 1"
        ))?;
        let mut rows = statement.query_map(params![session_id, now_ms], read_ask)?;
        Ok(rows.next().transpose()?)
    }

    /// Settles a pending question (answered or expired); false when it
    /// was no longer pending, so only the first answer counts.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn settle_ask(
        &mut self,
        ask_id: i64,
        state: AskState,
        answer: Option<&str>,
        answered_by: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE asks SET state = ?2, answer = ?3, answered_by = ?4, answered_ms = ?5
             WHERE ask_id = ?1 AND state = 'pending'",
            )?
            .execute(params![ask_id, state.as_str(), answer, answered_by, now_ms])?;
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::open;

    #[test]
    fn asks_are_created_once_and_settled_once() {
        let (_dir, mut outbox) = open();
        let (first, new) = outbox.ask_for("s", "call_1", "which db?", &[], 0, 1000).unwrap();
        assert!(new);
        assert_eq!(first.state, AskState::Pending);
        let (again, new) = outbox.ask_for("s", "call_1", "which db?", &[], 5, 2000).unwrap();
        assert!(!new);
        assert_eq!((again.ask_id, again.deadline_ms), (first.ask_id, 1000));
        assert_eq!(outbox.open_free_text_ask("s", 10).unwrap().map(|a| a.ask_id), Some(first.ask_id));
        assert!(outbox.settle_ask(first.ask_id, AskState::Answered, Some("sqlite"), Some("ana"), 10).unwrap());
        assert!(!outbox.settle_ask(first.ask_id, AskState::Expired, None, None, 11).unwrap(), "settled already");
        let settled = outbox.ask(first.ask_id).unwrap().unwrap();
        assert_eq!((settled.state, settled.answer.as_deref()), (AskState::Answered, Some("sqlite")));
        assert_eq!(outbox.open_free_text_ask("s", 12).unwrap(), None);
    }
}
