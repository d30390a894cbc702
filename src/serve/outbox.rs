//! The durable outbox: every accepted message is journaled in SQLite before the
//! client hears "accepted", and leaves the journal only once Discord has
//! answered with a message id (or refused it for good).
//!
//! A send is claimed with a nonce stored in its row. After a crash the same row
//! is sent again with the same nonce, and Discord's `enforce_nonce` returns the
//! message created the first time instead of posting twice. (Discord keeps
//! nonces for a few minutes; a sidecar down for longer may post a duplicate,
//! never lose one.)
//!
//! WAL with `synchronous = NORMAL`: a committed row survives the process being
//! killed at any point; only a power loss can drop the last transactions.

use std::path::Path;

use omp_discord_core::inbound::Delivery;
use rusqlite::{Connection, params};

/// The latest schema version; `migrate` brings older files up to it.
const SCHEMA_VERSION: i64 = 11;

/// One migration per schema version, applied in order inside a transaction.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        destination  TEXT    NOT NULL,
        session_id   TEXT    NOT NULL,
        request_id   TEXT    NOT NULL,
        payload      TEXT    NOT NULL,
        nonce        TEXT    NOT NULL,
        state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        created_ms   INTEGER NOT NULL,
        finished_ms  INTEGER,
        message_id   TEXT,
        last_error   TEXT
    );
    CREATE INDEX outbox_pending ON outbox (destination, seq) WHERE state = 'pending';",
    // Each OMP session's thread, so a resumed session returns to it.
    "CREATE TABLE sessions (
        session_id          TEXT    PRIMARY KEY,
        cwd                 TEXT,
        prompt              TEXT,
        host                TEXT    NOT NULL DEFAULT '',
        starter_nonce       TEXT    NOT NULL,
        starter_message_id  TEXT,
        thread_id           TEXT,
        created_ms          INTEGER NOT NULL,
        last_seen_ms        INTEGER NOT NULL
    );",
    // Rows sent together as one message share the leader's seq, so a resend
    // after a crash sends exactly the same message with the same nonce.
    "ALTER TABLE outbox ADD COLUMN batch INTEGER;",
    // Replies from Discord, kept until the session's shim has handed them to OMP.
    "CREATE TABLE inbound (
        message_id    INTEGER PRIMARY KEY,
        session_id    TEXT    NOT NULL,
        author_id     TEXT    NOT NULL,
        text          TEXT    NOT NULL,
        state         TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
        received_ms   INTEGER NOT NULL,
        delivered_ms  INTEGER
    );
    CREATE INDEX inbound_pending ON inbound (session_id, message_id) WHERE state = 'pending';
    CREATE INDEX sessions_thread ON sessions (thread_id);",
    // Messages that are edited in place later (the live run card), by key.
    "ALTER TABLE outbox ADD COLUMN key TEXT;
    ALTER TABLE outbox ADD COLUMN edit INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN named_with_prompt INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE keyed (
        destination  TEXT NOT NULL,
        key          TEXT NOT NULL,
        channel_id   TEXT NOT NULL,
        message_id   TEXT NOT NULL,
        PRIMARY KEY (destination, key)
    );",
    // Tool calls waiting for a person, and what became of them.
    "CREATE TABLE approvals (
        approval_id   INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id    TEXT    NOT NULL,
        tool_call_id  TEXT    NOT NULL,
        tool          TEXT    NOT NULL,
        input         TEXT    NOT NULL,
        state         TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'approved', 'denied', 'expired')),
        decided_by    TEXT,
        created_ms    INTEGER NOT NULL,
        deadline_ms   INTEGER NOT NULL,
        decided_ms    INTEGER,
        UNIQUE (session_id, tool_call_id)
    );",
    // Questions the model asked the people in a thread (`discord_ask`), and their answers.
    "CREATE TABLE asks (
        ask_id       INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id   TEXT    NOT NULL,
        call_id      TEXT    NOT NULL,
        question     TEXT    NOT NULL,
        options      TEXT    NOT NULL,
        state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'answered', 'expired')),
        answer       TEXT,
        answered_by  TEXT,
        created_ms   INTEGER NOT NULL,
        deadline_ms  INTEGER NOT NULL,
        answered_ms  INTEGER,
        UNIQUE (session_id, call_id)
    );",
    // Small facts the sidecar remembers (e.g. the hash of the registered slash commands).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // Tools someone chose to always allow in a session ("Always allow" on an approval).
    "CREATE TABLE session_allows (
        session_id  TEXT    NOT NULL,
        tool        TEXT    NOT NULL,
        allowed_by  TEXT    NOT NULL,
        created_ms  INTEGER NOT NULL,
        PRIMARY KEY (session_id, tool)
    );",
    // The channel a session's starter message and thread are in (its project's, or the home channel).
    "ALTER TABLE sessions ADD COLUMN channel_id TEXT;",
    // How each reply reaches a busy session: queued after the run, or steering it.
    "ALTER TABLE inbound ADD COLUMN deliver_as TEXT NOT NULL DEFAULT 'follow_up';",
];

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

const APPROVAL_COLUMNS: &str = "approval_id, session_id, tool, input, state, decided_by, deadline_ms";

fn read_approval(row: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        approval_id: row.get(0)?,
        session_id: row.get(1)?,
        tool: row.get(2)?,
        input: row.get(3)?,
        state: row.get(4)?,
        decided_by: row.get(5)?,
        deadline_ms: row.get(6)?,
    })
}

const ASK_COLUMNS: &str = "ask_id, session_id, question, options, state, answer, answered_by, deadline_ms";

fn read_ask(row: &rusqlite::Row<'_>) -> rusqlite::Result<Ask> {
    let options: String = row.get(3)?;
    Ok(Ask {
        ask_id: row.get(0)?,
        session_id: row.get(1)?,
        question: row.get(2)?,
        options: serde_json::from_str(&options).unwrap_or_default(),
        state: row.get(4)?,
        answer: row.get(5)?,
        answered_by: row.get(6)?,
        deadline_ms: row.get(7)?,
    })
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
    /// `pending`, `approved`, `denied` or `expired`.
    pub state: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When it expires, in ms since the epoch.
    pub deadline_ms: i64,
}

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
    /// `pending`, `answered` or `expired`.
    pub state: String,
    /// The answer.
    pub answer: Option<String>,
    /// Who answered.
    pub answered_by: Option<String>,
    /// When it expires, in ms since the epoch.
    pub deadline_ms: i64,
}

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
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every hot statement stays prepared (the default cache holds 16).
        conn.set_prepared_statement_cache_capacity(64);
        let mut outbox = Self { conn };
        outbox.migrate()?;
        Ok(outbox)
    }

    fn migrate(&mut self) -> Result<(), OutboxError> {
        let found: i64 = self.conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(OutboxError::TooNew { found, supported: SCHEMA_VERSION });
        }
        let tx = self.conn.transaction()?;
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
            tx.execute_batch(sql)?;
            crate::failpoint::hit("during_migration");
            tx.pragma_update(None, "user_version", i64::try_from(version).expect("few migrations") + 1)?;
        }
        tx.commit()?;
        Ok(())
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

    /// Marks rows delivered with Discord's message id, in one transaction.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn mark_delivered(&mut self, seqs: &[i64], message_id: &str, now_ms: i64) -> Result<(), OutboxError> {
        let tx = self.conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE outbox SET state = 'delivered', message_id = ?2, finished_ms = ?3 WHERE seq = ?1",
            )?;
            for seq in seqs {
                update.execute(params![seq, message_id, now_ms])?;
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

    /// Marks a row refused for good, with the reason.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn mark_failed(&mut self, seq: i64, error: &str, now_ms: i64) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("UPDATE outbox SET state = 'failed', last_error = ?2, finished_ms = ?3 WHERE seq = ?1")?
            .execute(params![seq, error, now_ms])?;
        Ok(())
    }

    /// Deletes finished rows older than `before_ms`; returns how many.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn prune(&mut self, before_ms: i64) -> Result<usize, OutboxError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM outbox WHERE state != 'pending' AND finished_ms < ?1")?
            .execute([before_ms])?)
    }

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
        state: &str,
        decided_by: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE approvals SET state = ?2, decided_by = ?3, decided_ms = ?4
             WHERE approval_id = ?1 AND state = 'pending'",
            )?
            .execute(params![approval_id, state, decided_by, now_ms])?;
        Ok(changed == 1)
    }

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

    /// Settles a pending question (`answered` or `expired`); false when it
    /// was no longer pending, so only the first answer counts.
    ///
    /// # Errors
    ///
    /// When the write fails.
    pub fn settle_ask(
        &mut self,
        ask_id: i64,
        state: &str,
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
            .execute(params![ask_id, state, answer, answered_by, now_ms])?;
        Ok(changed == 1)
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

    fn open() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox.sqlite3")).unwrap();
        (dir, outbox)
    }

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
        outbox.mark_delivered(&[a1], "m1", 5).unwrap();
        outbox.mark_delivered(&[b1], "m2", 5).unwrap();
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
        outbox.mark_delivered(&[a1, a2, a3], "m", 1).unwrap();
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
    fn stats_and_prune() {
        let (_dir, mut outbox) = open();
        let a = outbox.enqueue("channel:1", "s", "a", "{}", "1", 10).unwrap();
        let b = outbox.enqueue("channel:1", "s", "b", "{}", "2", 20).unwrap();
        outbox.enqueue("channel:1", "s", "c", "{}", "3", 30).unwrap();
        outbox.mark_delivered(&[a], "m", 100).unwrap();
        outbox.mark_failed(b, "Unknown Channel", 200).unwrap();
        let stats = outbox.stats().unwrap();
        assert_eq!(stats, OutboxStats { pending: 1, delivered: 1, failed: 1, oldest_pending_ms: Some(30) });
        assert_eq!(outbox.prune(150).unwrap(), 1);
        assert_eq!(outbox.stats().unwrap().delivered, 0);
    }

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

    #[test]
    fn version_one_files_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut outbox = Outbox::open(&path).unwrap();
        outbox.touch_session("s", None, None, "", "n", 0).unwrap();
        let version: i64 = outbox.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

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

    #[test]
    fn approvals_are_created_once_and_decided_once() {
        let (_dir, mut outbox) = open();
        let (first, new) = outbox.approval_for("s", "call_1", "bash", "{}", 0, 1000).unwrap();
        assert!(new);
        let (again, new) = outbox.approval_for("s", "call_1", "bash", "{}", 5, 2000).unwrap();
        assert!(!new);
        assert_eq!((again.approval_id, again.deadline_ms), (first.approval_id, 1000));
        assert!(outbox.decide_approval(first.approval_id, "approved", Some("ana"), 10).unwrap());
        assert!(!outbox.decide_approval(first.approval_id, "denied", Some("bob"), 11).unwrap(), "a stale click");
        let decided = outbox.approval(first.approval_id).unwrap().unwrap();
        assert_eq!((decided.state.as_str(), decided.decided_by.as_deref()), ("approved", Some("ana")));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Outbox::open(&path).unwrap_err();
        assert!(matches!(err, OutboxError::TooNew { found: 99, supported: SCHEMA_VERSION }), "{err}");
    }

    #[test]
    fn a_read_only_directory_is_a_clear_error() {
        let err = Outbox::open(Path::new("/proc/omp-discord-outbox.sqlite3")).unwrap_err();
        assert!(err.to_string().starts_with("the outbox database failed"), "{err}");
    }
}
