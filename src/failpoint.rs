//! Failpoints for the crash tests: `OMP_DISCORD_FAILPOINTS=after_send_before_mark:3`
//! kills the process with SIGKILL the 3rd time that point is reached (several
//! as `a:1,b:2`). The variable is read once, at the first hit.
//!
//! Compiled in only with `debug_assertions`: the integration tests always run
//! the debug binary `cargo test` builds, so the crash loop cannot be skipped by
//! forgetting a feature flag, while release builds (what users install) carry
//! neither the code nor the variable. In release `hit` is an empty inline
//! function.

/// The points, in the order a message passes them.
#[cfg(debug_assertions)]
pub const POINTS: &[&str] = &[
    "after_journal",
    "before_starter",
    "after_starter_before_record",
    "after_thread_before_record",
    "before_forum_post",
    "after_forum_post_before_record",
    "before_send",
    "after_send_before_mark",
    "during_migration",
];

/// Counts a pass through `name` and dies like `kill -9` when its turn has come.
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static ARMED: OnceLock<HashMap<String, (u64, AtomicU64)>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        let raw = std::env::var("OMP_DISCORD_FAILPOINTS").unwrap_or_default();
        raw.split(',')
            .filter_map(|spec| {
                let (point, nth) = spec.trim().split_once(':')?;
                assert!(POINTS.contains(&point), "OMP_DISCORD_FAILPOINTS names an unknown point {point:?}");
                Some((point.to_owned(), (nth.parse().ok()?, AtomicU64::new(0))))
            })
            .collect()
    });
    if let Some((nth, seen)) = armed.get(name)
        && seen.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        eprintln!("failpoint {name}: killing the process");
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this only runs if the signal could not be sent.
        std::process::abort();
    }
}

/// Release builds carry no failpoints.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}
