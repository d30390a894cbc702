//! Each OMP session and its thread (table `sessions`), so a resumed session
//! returns to its thread, and replies in a thread find their session.

use rusqlite::params;

use super::{Outbox, OutboxError};

/// A session and its thread, as far as it exists yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionThread {
    /// OMP's session id.
    pub session_id: String,
    /// Its working directory.
    pub cwd: Option<String>,
    /// Its first prompt.
    pub prompt: Option<String>,
    /// The machine it runs on.
    pub host: String,
    /// Nonce of the message that opens the thread.
    pub starter_nonce: String,
    /// That message, once posted.
    pub starter_message_id: Option<String>,
    /// The thread, once created.
    pub thread_id: Option<String>,
    /// Whether the thread's name already shows the first prompt.
    pub named_with_prompt: bool,
    /// The channel its starter message and thread are in, once chosen.
    pub channel_id: Option<String>,
}

impl Outbox {
    /// Records a session the first time it is seen; later calls fill in a
    /// missing first prompt and refresh its last-seen time.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn touch_session(
        &mut self,
        session_id: &str,
        cwd: Option<&str>,
        prompt: Option<&str>,
        host: &str,
        starter_nonce: &str,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (session_id, cwd, prompt, host, starter_nonce, created_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (session_id) DO UPDATE SET
                 prompt = COALESCE(sessions.prompt, excluded.prompt),
                 cwd = COALESCE(sessions.cwd, excluded.cwd),
                 host = CASE WHEN sessions.host = '' THEN excluded.host ELSE sessions.host END,
                 last_seen_ms = excluded.last_seen_ms",
            )?
            .execute(params![session_id, cwd, prompt, host, starter_nonce, now_ms])?;
        Ok(())
    }

    /// A session's thread record.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionThread>, OutboxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT session_id, cwd, prompt, host, starter_nonce, starter_message_id, thread_id, named_with_prompt,
                    channel_id
             FROM sessions WHERE session_id = ?1",
        )?;
        let mut rows = statement.query_map([session_id], |row| {
            Ok(SessionThread {
                session_id: row.get(0)?,
                cwd: row.get(1)?,
                prompt: row.get(2)?,
                host: row.get(3)?,
                starter_nonce: row.get(4)?,
                starter_message_id: row.get(5)?,
                thread_id: row.get(6)?,
                named_with_prompt: row.get(7)?,
                channel_id: row.get(8)?,
            })
        })?;
        Ok(rows.next().transpose()?)
    }

    /// Records the channel a session's thread opens in, before its starter is posted.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn set_channel(&mut self, session_id: &str, channel_id: &str) -> Result<(), OutboxError> {
        self.conn
            .execute("UPDATE sessions SET channel_id = ?2 WHERE session_id = ?1", params![session_id, channel_id])?;
        Ok(())
    }

    /// Records the message that opens a session's thread.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn set_starter(&mut self, session_id: &str, message_id: &str) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("UPDATE sessions SET starter_message_id = ?2 WHERE session_id = ?1")?
            .execute(params![session_id, message_id])?;
        Ok(())
    }

    /// Records a session's thread.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn set_thread(&mut self, session_id: &str, thread_id: &str) -> Result<(), OutboxError> {
        self.conn
            .execute("UPDATE sessions SET thread_id = ?2 WHERE session_id = ?1", params![session_id, thread_id])?;
        Ok(())
    }

    /// Records whether the session's thread is named after its first prompt.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn set_named_with_prompt(&mut self, session_id: &str, named: bool) -> Result<(), OutboxError> {
        self.conn
            .execute("UPDATE sessions SET named_with_prompt = ?2 WHERE session_id = ?1", params![session_id, named])?;
        Ok(())
    }

    /// Forgets a session's thread (it was deleted in Discord) so the next
    /// message opens a new one, with a new starter nonce.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn reset_thread(&mut self, session_id: &str, starter_nonce: &str) -> Result<(), OutboxError> {
        self.conn.prepare_cached("UPDATE sessions SET thread_id = NULL, starter_message_id = NULL, starter_nonce = ?2 WHERE session_id = ?1")?.execute(params![session_id, starter_nonce],
        )?;
        Ok(())
    }

    /// Sessions and their threads, most recently seen first, for `status`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn recent_sessions(&self, limit: usize) -> Result<Vec<SessionThread>, OutboxError> {
        let mut statement =
            self.conn.prepare_cached("SELECT session_id FROM sessions ORDER BY last_seen_ms DESC LIMIT ?1")?;
        let ids: Vec<String> = statement
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        ids.iter().filter_map(|id| self.session(id).transpose()).collect()
    }

    /// Where to catch up after a gap the gateway could not replay: for each
    /// session seen since `since_ms` that has a thread, the thread and the
    /// newest message already taken from it (the thread's own id when none,
    /// since every message in it is newer), most recent sessions first.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn backfill_cursors(&self, since_ms: i64, limit: usize) -> Result<Vec<(u64, u64)>, OutboxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT s.thread_id, (SELECT MAX(message_id) FROM inbound i WHERE i.session_id = s.session_id)
             FROM sessions s WHERE s.thread_id IS NOT NULL AND s.last_seen_ms >= ?1
             ORDER BY s.last_seen_ms DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![since_ms, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
        })?;
        let mut cursors = Vec::new();
        for row in rows {
            let (thread, newest) = row?;
            let Ok(thread) = thread.parse::<u64>() else { continue };
            let newest = newest.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
            cursors.push((thread, newest.max(thread)));
        }
        Ok(cursors)
    }

    /// The session whose thread is `thread_id`.
    ///
    /// # Errors
    ///
    /// When the read fails.
    pub fn session_by_thread(&self, thread_id: &str) -> Result<Option<String>, OutboxError> {
        let mut statement = self.conn.prepare_cached("SELECT session_id FROM sessions WHERE thread_id = ?1")?;
        let mut rows = statement.query_map([thread_id], |row| row.get(0))?;
        Ok(rows.next().transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::open;

    #[test]
    fn sessions_keep_their_thread_and_first_prompt() {
        let (_dir, mut outbox) = open();
        outbox.touch_session("s", Some("/w/api"), None, "box", "n1", 1).unwrap();
        outbox.touch_session("s", None, Some("fix it"), "box", "n2", 2).unwrap();
        outbox.touch_session("s", None, Some("later prompt"), "box", "n3", 3).unwrap();
        let session = outbox.session("s").unwrap().unwrap();
        assert_eq!(session.cwd.as_deref(), Some("/w/api"));
        assert_eq!(session.prompt.as_deref(), Some("fix it"));
        assert_eq!(session.starter_nonce, "n1", "the first nonce is kept for retries");
        outbox.set_starter("s", "100").unwrap();
        outbox.set_thread("s", "100").unwrap();
        assert_eq!(outbox.session("s").unwrap().unwrap().thread_id.as_deref(), Some("100"));
        outbox.reset_thread("s", "n9").unwrap();
        let session = outbox.session("s").unwrap().unwrap();
        assert_eq!((session.thread_id, session.starter_message_id, session.starter_nonce.as_str()), (None, None, "n9"));
        assert_eq!(outbox.recent_sessions(5).unwrap().len(), 1);
        assert!(outbox.session("unknown").unwrap().is_none());
    }
}
