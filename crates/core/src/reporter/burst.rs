//! Tool errors and calls held back to go out together: within one interval
//! of the last post, new items wait and the next due post carries them all.

/// Items of one burst kept whole; the rest are kept by name only, and beyond
/// [`BURST_CAP`] only counted.
const BURST_KEEP: usize = 50;
/// Items of one burst remembered at all.
const BURST_CAP: usize = 10_000;

/// Items waiting to go out together as one message.
#[derive(Debug)]
pub(super) struct Burst<T> {
    pending: Vec<T>,
    last_post_ms: Option<u64>,
}

impl<T> Default for Burst<T> {
    fn default() -> Self {
        Self { pending: Vec::new(), last_post_ms: None }
    }
}

impl<T> Burst<T> {
    pub(super) fn push(&mut self, item: T, name_only: impl FnOnce(T) -> T) {
        match self.pending.len() {
            n if n < BURST_KEEP => self.pending.push(item),
            n if n < BURST_CAP => self.pending.push(name_only(item)),
            _ => {}
        }
    }

    /// Takes the pending items if the last post is an interval old (or `force`).
    pub(super) fn take_due(&mut self, now_ms: u64, interval_ms: u64, force: bool) -> Option<Vec<T>> {
        let due = self.last_post_ms.is_none_or(|last| now_ms.saturating_sub(last) >= interval_ms);
        if self.pending.is_empty() || !(due || force) {
            return None;
        }
        self.last_post_ms = Some(now_ms);
        Some(std::mem::take(&mut self.pending))
    }
}
