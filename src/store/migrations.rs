//! The schema: one migration per version, applied in order inside one
//! transaction, so a file is either upgraded whole or left as it was. The
//! version lives in SQLite's `user_version`; a file from a newer build is refused.

use rusqlite::Connection;

use super::OutboxError;

/// The latest schema version; `migrate` brings older files up to it.
const SCHEMA_VERSION: i64 = 12;

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
    // A client's name for a notification, journaled once however often it is sent; and where
    // each row ended (the channel it landed in, the code it failed with), to answer a repeat.
    "ALTER TABLE outbox ADD COLUMN idempotency_key TEXT;
    ALTER TABLE outbox ADD COLUMN channel_id TEXT;
    ALTER TABLE outbox ADD COLUMN error_code TEXT;
    CREATE UNIQUE INDEX outbox_idempotency ON outbox (idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX outbox_message ON outbox (message_id) WHERE message_id IS NOT NULL;",
];

/// Brings the file up to [`SCHEMA_VERSION`].
pub(super) fn migrate(conn: &mut Connection) -> Result<(), OutboxError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(OutboxError::TooNew { found, supported: SCHEMA_VERSION });
    }
    let tx = conn.transaction()?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(sql)?;
        crate::failpoint::hit("during_migration");
        tx.pragma_update(None, "user_version", i64::try_from(version).expect("few migrations") + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outbox;

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
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Outbox::open(&path).unwrap_err();
        assert!(matches!(err, OutboxError::TooNew { found: 99, supported: SCHEMA_VERSION }), "{err}");
    }
}
