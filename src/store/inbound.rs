//! Replies from Discord (table `inbound`), journaled once each and kept
//! until the session's shim has handed them to OMP.

use omp_discord_core::inbound::Delivery;
use rusqlite::params;

use super::{Outbox, OutboxError};

/// A reply from Discord waiting for its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The Discord message id.
    pub message_id: u64,
    /// The session it is for.
    pub session_id: String,
    /// Its author.
    pub author_id: String,
    /// The text for OMP.
    pub text: String,
    /// How it reaches a busy session.
    pub delivery: Delivery,
}

impl Outbox {
    /// Journals a reply; returns false when it was already known (a replay
    /// after a resume or a backfill), so each message is handed on once.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn record_inbound(&mut self, inbound: &Inbound, now_ms: i64) -> Result<bool, OutboxError> {
        let added = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO inbound (message_id, session_id, author_id, text, received_ms, deliver_as)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                i64::try_from(inbound.message_id).unwrap_or(i64::MAX),
                inbound.session_id,
                inbound.author_id,
                inbound.text,
                now_ms,
                inbound.delivery.as_str()
            ])?;
        Ok(added == 1)
    }

    /// Whether a Discord message was already taken (as a reply or an answer).
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn inbound_known(&self, message_id: u64) -> Result<bool, OutboxError> {
        let mut statement = self.conn.prepare_cached("SELECT 1 FROM inbound WHERE message_id = ?1")?;
        Ok(statement.exists([i64::try_from(message_id).unwrap_or(i64::MAX)])?)
    }

    /// Replies a session has not acknowledged yet, in Discord's order.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn pending_inbound(&self, session_id: &str) -> Result<Vec<Inbound>, OutboxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT message_id, session_id, author_id, text, deliver_as FROM inbound
             WHERE session_id = ?1 AND state = 'pending' ORDER BY message_id",
        )?;
        let rows = statement.query_map([session_id], |row| {
            Ok(Inbound {
                message_id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or_default(),
                session_id: row.get(1)?,
                author_id: row.get(2)?,
                text: row.get(3)?,
                delivery: Delivery::from_name(&row.get::<_, String>(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The session a reply was for, and that session's thread.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn inbound_session(&self, message_id: u64) -> Result<Option<(String, Option<String>)>, OutboxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT s.session_id, s.thread_id FROM inbound i JOIN sessions s ON s.session_id = i.session_id
             WHERE i.message_id = ?1",
        )?;
        let mut rows = statement
            .query_map([i64::try_from(message_id).unwrap_or(i64::MAX)], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.next().transpose()?)
    }

    /// Marks a reply handed to OMP.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn ack_inbound(&mut self, message_id: u64, now_ms: i64) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("UPDATE inbound SET state = 'delivered', delivered_ms = ?2 WHERE message_id = ?1")?
            .execute(params![i64::try_from(message_id).unwrap_or(i64::MAX), now_ms])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::open;

    #[test]
    fn inbound_is_kept_once_in_order_until_acknowledged() {
        let (_dir, mut outbox) = open();
        let reply = |id: u64| Inbound {
            message_id: id,
            session_id: "s".into(),
            author_id: "u".into(),
            text: format!("m{id}"),
            delivery: Delivery::FollowUp,
        };
        assert!(outbox.record_inbound(&reply(1_300_000_000_000_000_020), 0).unwrap());
        assert!(outbox.record_inbound(&reply(1_300_000_000_000_000_010), 0).unwrap());
        assert!(!outbox.record_inbound(&reply(1_300_000_000_000_000_010), 0).unwrap(), "a replay is ignored");
        let pending: Vec<u64> = outbox.pending_inbound("s").unwrap().iter().map(|i| i.message_id).collect();
        assert_eq!(pending, [1_300_000_000_000_000_010, 1_300_000_000_000_000_020]);
        outbox.ack_inbound(1_300_000_000_000_000_010, 1).unwrap();
        assert_eq!(outbox.pending_inbound("s").unwrap().len(), 1);
        outbox.touch_session("s", None, None, "", "n", 0).unwrap();
        outbox.set_thread("s", "77").unwrap();
        assert_eq!(outbox.session_by_thread("77").unwrap().as_deref(), Some("s"));
        assert_eq!(outbox.session_by_thread("78").unwrap(), None);
    }
}
