//! Retention: what the state file keeps once it no longer matters, and how
//! the file gives the space back. The sidecar runs [`Outbox::retain`] every
//! ten minutes; the file uses SQLite's incremental auto-vacuum, so freed
//! pages go back to the disk a few at a time instead of in one long `VACUUM`.

use super::{Outbox, OutboxError};

/// How long delivered and failed notifications stay (for `status`, and to
/// answer a repeated idempotency key).
pub const KEEP_FINISHED_MS: i64 = 24 * 3600 * 1000;
/// How long taken replies, decided approvals and answered or expired
/// questions stay (for the audit trail in the log's neighbourhood, and so a
/// late click still finds what it was about).
pub const KEEP_DECIDED_MS: i64 = 30 * 24 * 3600 * 1000;
/// Pages given back to the disk per run, at most (4 KiB each: 16 MiB).
const VACUUM_PAGES_PER_RUN: i64 = 4096;

/// What one run of [`Outbox::retain`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    /// Delivered or failed notifications.
    pub notifications: usize,
    /// Remembered messages of run cards whose notifications are gone.
    pub keyed: usize,
    /// Replies handed to OMP long ago.
    pub replies: usize,
    /// Decided approvals.
    pub approvals: usize,
    /// Answered or expired questions.
    pub asks: usize,
}

impl Outbox {
    /// Removes what is past its retention at `now_ms`, then gives free pages
    /// back to the disk. Pending rows, sessions, and each session's newest
    /// reply (the cursor from which Discord's history is caught up) stay.
    ///
    /// # Errors
    ///
    /// When a write fails.
    pub fn retain(&mut self, now_ms: i64) -> Result<Pruned, OutboxError> {
        let finished = now_ms - KEEP_FINISHED_MS;
        let decided = now_ms - KEEP_DECIDED_MS;
        let pruned = self.atomically(|outbox| {
            let conn = &outbox.conn;
            Ok(Pruned {
                notifications: conn
                    .prepare_cached("DELETE FROM outbox WHERE state != 'pending' AND finished_ms < ?1")?
                    .execute([finished])?,
                // A run card is edited only while its rows are in the journal (see controls).
                keyed: conn
                    .prepare_cached(
                        "DELETE FROM keyed WHERE key LIKE 'card:%'
                         AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.key = keyed.key)",
                    )?
                    .execute([])?,
                replies: conn
                    .prepare_cached(
                        "DELETE FROM inbound WHERE state = 'delivered' AND received_ms < ?1
                         AND message_id < (SELECT MAX(message_id) FROM inbound newest
                                           WHERE newest.session_id = inbound.session_id)",
                    )?
                    .execute([decided])?,
                approvals: conn
                    .prepare_cached(
                        "DELETE FROM approvals WHERE state != 'pending' AND COALESCE(decided_ms, deadline_ms) < ?1",
                    )?
                    .execute([decided])?,
                asks: conn
                    .prepare_cached(
                        "DELETE FROM asks WHERE state != 'pending' AND COALESCE(answered_ms, deadline_ms) < ?1",
                    )?
                    .execute([decided])?,
            })
        })?;
        // The pragma frees one page per step: step it to the end.
        let mut vacuum = self.conn.prepare(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES_PER_RUN})"))?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
        Ok(pruned)
    }

    /// The file's size in bytes, as SQLite counts it (pages × page size),
    /// and how much of it is free pages waiting to be given back.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn size(&self) -> Result<(i64, i64), OutboxError> {
        let pragma = |name: &str| self.conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0));
        let page = pragma("page_size")?;
        Ok((pragma("page_count")? * page, pragma("freelist_count")? * page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Inbound;
    use crate::store::tests::open;

    const DAY: i64 = 24 * 3600 * 1000;

    #[test]
    fn old_finished_rows_go_and_pending_rows_and_cursors_stay() {
        let (_dir, mut outbox) = open();
        let old = outbox.enqueue("channel:1", "s", "a", "{}", "1", 0).unwrap();
        let pending = outbox.enqueue("channel:1", "s", "b", "{}", "2", 0).unwrap();
        outbox.mark_delivered(&[old], "1", "10", DAY).unwrap();
        outbox.set_key(old, Some("card:s:1"), false).unwrap();
        outbox.remember_key("channel:1", "card:s:1", "1", "10").unwrap();
        for message_id in [100, 200] {
            let reply = Inbound {
                message_id,
                session_id: "s".into(),
                author_id: "u".into(),
                text: "hi".into(),
                delivery: omp_discord_core::inbound::Delivery::FollowUp,
            };
            outbox.record_inbound(&reply, DAY).unwrap();
            outbox.ack_inbound(message_id, DAY).unwrap();
        }
        // A day later nothing is due yet.
        assert_eq!(outbox.retain(DAY + DAY / 2).unwrap(), Pruned::default());
        let pruned = outbox.retain(40 * DAY).unwrap();
        assert_eq!(pruned, Pruned { notifications: 1, keyed: 1, replies: 1, approvals: 0, asks: 0 });
        assert_eq!(outbox.next_rows("channel:1", 10).unwrap()[0].seq, pending);
        // The newest reply stays: catching up on the thread starts after it.
        assert!(outbox.inbound_known(200).unwrap() && !outbox.inbound_known(100).unwrap());
    }

    #[test]
    fn the_file_gives_freed_space_back() {
        let (dir, mut outbox) = open();
        let body = format!("{{\"content\":\"{}\"}}", "x".repeat(2000));
        let seqs: Vec<i64> = (0..2000)
            .map(|n| outbox.enqueue("channel:1", "s", &n.to_string(), &body, &n.to_string(), 0).unwrap())
            .collect();
        outbox.mark_delivered(&seqs, "1", "10", 0).unwrap();
        let (full, _) = outbox.size().unwrap();
        assert!(full > 4_000_000, "{full}");
        outbox.retain(2 * DAY).unwrap();
        let (after, free) = outbox.size().unwrap();
        assert!(after < full / 4, "{after} of {full} bytes left");
        assert_eq!(free, 0);
        drop(outbox);
        // A file opened again keeps the setting.
        let reopened = Outbox::open(&dir.path().join("outbox.sqlite3")).unwrap();
        let mode: i64 = reopened.conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0)).unwrap();
        assert_eq!(mode, 2, "incremental");
    }
}
