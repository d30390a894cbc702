//! The spool: reports an extension could not hand to a sidecar, left in
//! `<state>/spool/*.jsonl`, journaled once by the next sidecar.

use super::Sidecar;
use omp_discord_core::protocol::{ClientFrame, decode_client_frame};
use std::sync::Mutex as SyncMutex;

/// Held while the spool is imported, so two connections never import a file twice.
#[derive(Debug, Default)]
pub(super) struct Spool {
    pub(super) lock: SyncMutex<()>,
}

impl Sidecar {
    /// Journals the reports that extensions left in `<state>/spool` when they
    /// could not reach a sidecar (one JSON `notify` frame per line), oldest
    /// file first, and removes each file once its frames are journaled.
    /// Returns how many frames were journaled.
    pub fn import_spool(&self) -> usize {
        let _importing = self.spool.lock.lock().expect("spool lock");
        let dir = self.config.state_dir.join(omp_discord_core::paths::SPOOL_DIR_NAME);
        let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        let mut journaled = 0;
        for spooled in files {
            // Claimed by renaming, as the shim does: of the two, exactly one journals a file.
            let file = spooled.with_extension("jsonl.importing");
            if std::fs::rename(&spooled, &file).is_err() {
                continue;
            }
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(err) => {
                    tracing::warn!(file = %file.display(), error = %err, "cannot read a spool file; left in place");
                    let _ = std::fs::rename(&file, &spooled);
                    continue;
                }
            };
            for (n, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
                match decode_client_frame(line.as_bytes()) {
                    Ok(ClientFrame::Notify(request)) => match self.accept(request, "") {
                        Ok(_) => journaled += 1,
                        Err(frame) => {
                            tracing::warn!(file = %file.display(), line = n + 1, ?frame, "a spooled report was refused")
                        }
                    },
                    Ok(_) | Err(_) => {
                        tracing::warn!(file = %file.display(), line = n + 1, "a spool line is not a notify frame; skipped")
                    }
                }
            }
            if let Err(err) = std::fs::remove_file(&file) {
                tracing::warn!(file = %file.display(), error = %err, "cannot remove an imported spool file");
            }
        }
        if journaled > 0 {
            tracing::info!(reports = journaled, "journaled reports spooled while no sidecar ran");
        }
        journaled
    }
}
