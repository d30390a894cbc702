//! The journal of messages to send (table `outbox`) and the messages edited
//! in place later, by key (table `keyed`): journal, claim a batch, mark it
//! delivered or failed, prune, and count for `status`.

use rusqlite::params;

use super::{Outbox, OutboxError};

/// A message waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Position in the journal; order of delivery within a destination.
    pub seq: i64,
    /// Where it goes, e.g. `channel:123`.
    pub destination: String,
    /// The client's request id, to route the outcome back.
    pub request_id: String,
    /// The message JSON.
    pub payload: String,
    /// The nonce every attempt of this row uses.
    pub nonce: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// The batch this row was claimed into, if any (the leader's seq).
    pub batch: Option<i64>,
    /// The key the message is remembered under, for later edits.
    pub key: Option<String>,
    /// Whether this row replaces the message posted under `key`.
    pub edit: bool,
}

const PENDING_COLUMNS: &str = "seq, destination, request_id, payload, nonce, attempts, batch, key, edit";

fn read_pending(row: &rusqlite::Row<'_>) -> rusqlite::Result<Pending> {
    Ok(Pending {
        seq: row.get(0)?,
        destination: row.get(1)?,
        request_id: row.get(2)?,
        payload: row.get(3)?,
        nonce: row.get(4)?,
        attempts: row.get(5)?,
        batch: row.get(6)?,
        key: row.get(7)?,
        edit: row.get(8)?,
    })
}

/// A journaled row found by its client's idempotency key, and how it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Journaled {
    /// Still to be sent.
    Pending {
        /// Its position in the journal.
        seq: i64,
    },
    /// Posted.
    Delivered {
        /// Its position in the journal.
        seq: i64,
        /// Where it landed.
        channel_id: String,
        /// Discord's message id.
        message_id: String,
    },
    /// Refused for good.
    Failed {
        /// Its position in the journal.
        seq: i64,
        /// The protocol's error code (`discord_rejected` for rows failed before codes were kept).
        code: String,
        /// Why.
        error: String,
    },
}

/// Counts for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct OutboxStats {
    /// Rows waiting.
    pub pending: i64,
    /// Rows delivered and not yet pruned.
    pub delivered: i64,
    /// Rows Discord refused.
    pub failed: i64,
    /// Creation time of the oldest pending row, in ms since the epoch.
    pub oldest_pending_ms: Option<i64>,
}

impl Outbox {
    /// Journals a message; returns its sequence number.
    ///
    /// # Errors
    ///
    /// When the write fails (the client must then be told it was not accepted).
    pub fn enqueue(
        &mut self,
        destination: &str,
        session_id: &str,
        request_id: &str,
        payload: &str,
        nonce: &str,
        now_ms: i64,
    ) -> Result<i64, OutboxError> {
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (destination, session_id, request_id, payload, nonce, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![destination, session_id, request_id, payload, nonce, now_ms])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Names a row just journaled by its client's idempotency key (in the
    /// same transaction as [`Outbox::enqueue`]); the journal holds a key once.
    ///
    /// # Errors
    ///
    /// When the write fails, or another row holds the key already.
    pub fn set_idempotency_key(&mut self, seq: i64, idempotency_key: &str) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("UPDATE outbox SET idempotency_key = ?2 WHERE seq = ?1")?
            .execute(params![seq, idempotency_key])?;
        Ok(())
    }

    /// The row journaled under a client's idempotency key, if the journal still holds it.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn journaled(&self, idempotency_key: &str) -> Result<Option<Journaled>, OutboxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT seq, state, channel_id, message_id, error_code, last_error FROM outbox WHERE idempotency_key = ?1",
        )?;
        let mut rows = statement.query_map([idempotency_key], |row| {
            let seq: i64 = row.get(0)?;
            let state: String = row.get(1)?;
            Ok(match state.as_str() {
                "delivered" => Journaled::Delivered {
                    seq,
                    channel_id: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    message_id: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                },
                "failed" => Journaled::Failed {
                    seq,
                    code: row.get::<_, Option<String>>(4)?.unwrap_or_else(|| "discord_rejected".to_owned()),
                    error: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                },
                _ => Journaled::Pending { seq },
            })
        })?;
        Ok(rows.next().transpose()?)
    }

    /// Whether the journal records `message_id` as one of its deliveries (or
    /// a session's starter message): a message found in Discord that the
    /// journal does not know may be a posting whose record was lost.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn knows_message(&self, message_id: &str) -> Result<bool, OutboxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE message_id = ?1)
                 OR EXISTS (SELECT 1 FROM sessions WHERE starter_message_id = ?1)",
        )?;
        Ok(statement.query_row([message_id], |row| row.get(0))?)
    }

    /// Destinations with pending rows, oldest first.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn pending_destinations(&self) -> Result<Vec<String>, OutboxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT destination FROM outbox WHERE state = 'pending' GROUP BY destination ORDER BY MIN(seq)",
        )?;
        Ok(statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?)
    }

    /// What `destination` should send next, in journal order: its claimed
    /// batch if it has one (a send that may have happened before a crash),
    /// else up to `max_rows` of its oldest pending rows. Empty when nothing waits.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn next_rows(&self, destination: &str, max_rows: usize) -> Result<Vec<Pending>, OutboxError> {
        let mut oldest = self.conn.prepare_cached(&format!(
            "SELECT {PENDING_COLUMNS} FROM outbox WHERE destination = ?1 AND state = 'pending' ORDER BY seq LIMIT ?2"
        ))?;
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let rows = oldest.query_map(params![destination, limit], read_pending)?.collect::<Result<Vec<_>, _>>()?;
        let Some(batch) = rows.first().and_then(|head| head.batch) else { return Ok(rows) };
        let mut by_batch = self.conn.prepare_cached(&format!(
            "SELECT {PENDING_COLUMNS} FROM outbox WHERE batch = ?1 AND state = 'pending' ORDER BY seq"
        ))?;
        Ok(by_batch.query_map([batch], read_pending)?.collect::<Result<_, _>>()?)
    }

    /// Every pending row of `destination`, oldest first, as `(seq, request id)`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn pending_requests(&self, destination: &str) -> Result<Vec<(i64, String)>, OutboxError> {
        let mut pending = self.conn.prepare_cached(
            "SELECT seq, request_id FROM outbox WHERE destination = ?1 AND state = 'pending' ORDER BY seq",
        )?;
        Ok(pending.query_map([destination], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    /// Marks a row as keyed (and as an edit of its key's message).
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn set_key(&mut self, seq: i64, key: Option<&str>, edit: bool) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("UPDATE outbox SET key = ?2, edit = ?3 WHERE seq = ?1")?
            .execute(params![seq, key, edit])?;
        Ok(())
    }

    /// The newest journaled version of the message under `key` (keys name
    /// their session, so they are unique): `(destination, payload)`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn latest_keyed_payload(&self, key: &str) -> Result<Option<(String, String)>, OutboxError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT destination, payload FROM outbox WHERE key = ?1 ORDER BY seq DESC LIMIT 1")?;
        let mut rows = statement.query_map([key], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.next().transpose()?)
    }

    /// The message posted under `key` in `destination`: `(channel_id, message_id)`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn keyed(&self, destination: &str, key: &str) -> Result<Option<(String, String)>, OutboxError> {
        let mut statement =
            self.conn.prepare_cached("SELECT channel_id, message_id FROM keyed WHERE destination = ?1 AND key = ?2")?;
        let mut rows = statement.query_map([destination, key], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.next().transpose()?)
    }

    /// Remembers the message posted under `key`.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn remember_key(
        &mut self,
        destination: &str,
        key: &str,
        channel_id: &str,
        message_id: &str,
    ) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO keyed (destination, key, channel_id, message_id) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![destination, key, channel_id, message_id])?;
        Ok(())
    }

    /// Records that `seqs` go out together as one message led by `seqs[0]`,
    /// and counts the attempt, before anything is sent.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn claim(&mut self, seqs: &[i64]) -> Result<(), OutboxError> {
        let Some(&leader) = seqs.first() else { return Ok(()) };
        let tx = self.conn.transaction()?;
        {
            let mut update =
                tx.prepare_cached("UPDATE outbox SET batch = ?1, attempts = attempts + 1 WHERE seq = ?2")?;
            for seq in seqs {
                update.execute(params![leader, seq])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks rows delivered, with where they landed, in one transaction.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn mark_delivered(
        &mut self,
        seqs: &[i64],
        channel_id: &str,
        message_id: &str,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        let tx = self.conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE outbox SET state = 'delivered', channel_id = ?2, message_id = ?3, finished_ms = ?4
                 WHERE seq = ?1",
            )?;
            for seq in seqs {
                update.execute(params![seq, channel_id, message_id, now_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Releases a claimed batch whose rows may now be regrouped (Discord
    /// refused the merged message, so each row is tried on its own).
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn unclaim(&mut self, leader: i64) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("UPDATE outbox SET batch = NULL WHERE batch = ?1 AND state = 'pending'")?
            .execute([leader])?;
        Ok(())
    }

    /// Marks a row refused for good, with the protocol's error code and the reason.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn mark_failed(&mut self, seq: i64, code: &str, error: &str, now_ms: i64) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached(
                "UPDATE outbox SET state = 'failed', error_code = ?2, last_error = ?3, finished_ms = ?4 WHERE seq = ?1",
            )?
            .execute(params![seq, code, error, now_ms])?;
        Ok(())
    }

    /// Counts for `status`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'delivered'), 0),
                    COALESCE(SUM(state = 'failed'), 0), MIN(CASE WHEN state = 'pending' THEN created_ms END)
             FROM outbox",
            [],
            |row| {
                Ok(OutboxStats {
                    pending: row.get(0)?,
                    delivered: row.get(1)?,
                    failed: row.get(2)?,
                    oldest_pending_ms: row.get(3)?,
                })
            },
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::open;

    fn seqs(rows: &[Pending]) -> Vec<i64> {
        rows.iter().map(|p| p.seq).collect()
    }

    #[test]
    fn next_rows_keep_order_per_destination() {
        let (_dir, mut outbox) = open();
        let a1 = outbox.enqueue("channel:1", "s", "a1", "{}", "n1", 0).unwrap();
        let b1 = outbox.enqueue("channel:2", "s", "b1", "{}", "n2", 0).unwrap();
        let a2 = outbox.enqueue("channel:1", "s", "a2", "{}", "n3", 0).unwrap();
        let a3 = outbox.enqueue("channel:1", "s", "a3", "{}", "n4", 0).unwrap();
        assert_eq!(outbox.pending_destinations().unwrap(), ["channel:1", "channel:2"]);
        assert_eq!(seqs(&outbox.next_rows("channel:1", 2).unwrap()), [a1, a2]);
        assert_eq!(seqs(&outbox.next_rows("channel:2", 2).unwrap()), [b1]);
        outbox.mark_delivered(&[a1], "c", "m1", 5).unwrap();
        outbox.mark_delivered(&[b1], "c", "m2", 5).unwrap();
        assert_eq!(outbox.pending_destinations().unwrap(), ["channel:1"]);
        assert_eq!(seqs(&outbox.next_rows("channel:1", 10).unwrap()), [a2, a3]);
        assert!(outbox.next_rows("channel:2", 10).unwrap().is_empty());
    }

    #[test]
    fn a_claimed_batch_is_resent_as_it_was() {
        let (_dir, mut outbox) = open();
        let a1 = outbox.enqueue("channel:1", "s", "a1", "{}", "n1", 0).unwrap();
        let a2 = outbox.enqueue("channel:1", "s", "a2", "{}", "n2", 0).unwrap();
        outbox.claim(&[a1, a2]).unwrap();
        // Rows journaled after the claim wait for the next message.
        let a3 = outbox.enqueue("channel:1", "s", "a3", "{}", "n3", 0).unwrap();
        let next = outbox.next_rows("channel:1", 10).unwrap();
        assert_eq!(seqs(&next), [a1, a2]);
        assert_eq!((next[0].batch, next[0].attempts), (Some(a1), 1));
        outbox.unclaim(a1).unwrap();
        assert_eq!(seqs(&outbox.next_rows("channel:1", 10).unwrap()), [a1, a2, a3]);
        outbox.claim(&[a1, a2, a3]).unwrap();
        outbox.mark_delivered(&[a1, a2, a3], "c", "m", 1).unwrap();
        assert!(outbox.next_rows("channel:1", 10).unwrap().is_empty());
    }

    #[test]
    fn rows_survive_reopening_with_their_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let seq = {
            let mut outbox = Outbox::open(&path).unwrap();
            let seq = outbox.enqueue("channel:1", "s", "r", r#"{"content":"x"}"#, "777", 1).unwrap();
            outbox.claim(&[seq]).unwrap();
            seq
        };
        let outbox = Outbox::open(&path).unwrap();
        let head = &outbox.next_rows("channel:1", 10).unwrap()[0];
        assert_eq!((head.seq, head.nonce.as_str(), head.attempts), (seq, "777", 1));
    }

    #[test]
    fn stats_and_retention() {
        let (_dir, mut outbox) = open();
        let a = outbox.enqueue("channel:1", "s", "a", "{}", "1", 10).unwrap();
        let b = outbox.enqueue("channel:1", "s", "b", "{}", "2", 20).unwrap();
        outbox.enqueue("channel:1", "s", "c", "{}", "3", 30).unwrap();
        outbox.mark_delivered(&[a], "c", "m", 100).unwrap();
        outbox.mark_failed(b, "unknown_channel", "Unknown Channel", 200).unwrap();
        let stats = outbox.stats().unwrap();
        assert_eq!(stats, OutboxStats { pending: 1, delivered: 1, failed: 1, oldest_pending_ms: Some(30) });
        assert_eq!(outbox.retain(150 + super::super::retention::KEEP_FINISHED_MS).unwrap().notifications, 1);
        assert_eq!(outbox.stats().unwrap().delivered, 0);
    }

    #[test]
    fn an_idempotency_key_is_journaled_once_and_finds_how_its_row_ended() {
        let (_dir, mut outbox) = open();
        assert_eq!(outbox.journaled("i-1").unwrap(), None);
        let a = outbox.enqueue("channel:1", "s", "a", "{}", "1", 10).unwrap();
        outbox.set_idempotency_key(a, "i-1").unwrap();
        let b = outbox.enqueue("channel:1", "s", "b", "{}", "2", 10).unwrap();
        outbox.set_idempotency_key(b, "i-2").unwrap();
        assert_eq!(outbox.journaled("i-1").unwrap(), Some(Journaled::Pending { seq: a }));
        // The unique constraint refuses a second row with a key already held.
        let c = outbox.enqueue("channel:1", "s", "c", "{}", "3", 10).unwrap();
        assert!(outbox.set_idempotency_key(c, "i-1").is_err());
        outbox.mark_delivered(&[a], "77", "88", 20).unwrap();
        outbox.mark_failed(b, "unknown_channel", "Unknown Channel", 20).unwrap();
        assert_eq!(
            outbox.journaled("i-1").unwrap(),
            Some(Journaled::Delivered { seq: a, channel_id: "77".into(), message_id: "88".into() })
        );
        assert_eq!(
            outbox.journaled("i-2").unwrap(),
            Some(Journaled::Failed { seq: b, code: "unknown_channel".into(), error: "Unknown Channel".into() })
        );
        // Pruned with its row: a key is remembered as long as the journal keeps the row.
        outbox.retain(30 + super::super::retention::KEEP_FINISHED_MS).unwrap();
        assert_eq!(outbox.journaled("i-1").unwrap(), None);
    }

    #[test]
    fn keyed_rows_remember_their_message() {
        let (_dir, mut outbox) = open();
        let post = outbox.enqueue("session:s", "s", "r1", "{}", "n1", 0).unwrap();
        outbox.set_key(post, Some("card:s:1"), false).unwrap();
        let edit = outbox.enqueue("session:s", "s", "r2", "{}", "n2", 0).unwrap();
        outbox.set_key(edit, Some("card:s:1"), true).unwrap();
        let rows = outbox.next_rows("session:s", 10).unwrap();
        assert_eq!((rows[0].key.as_deref(), rows[0].edit), (Some("card:s:1"), false));
        assert_eq!((rows[1].key.as_deref(), rows[1].edit), (Some("card:s:1"), true));
        assert_eq!(outbox.keyed("session:s", "card:s:1").unwrap(), None);
        outbox.remember_key("session:s", "card:s:1", "10", "20").unwrap();
        assert_eq!(outbox.keyed("session:s", "card:s:1").unwrap(), Some(("10".into(), "20".into())));
    }
}
