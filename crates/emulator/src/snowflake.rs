//! Snowflake ids and timestamps, generated the way Discord generates them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Discord's epoch, the first second of 2015, in milliseconds since the Unix epoch.
pub(crate) const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Hands out unique, time-ordered snowflakes.
///
/// A snowflake is `(ms since DISCORD_EPOCH) << 22 | worker << 17 | process << 12 | increment`.
/// Ids never repeat and always grow, even when many are made in one millisecond.
#[derive(Debug, Default)]
pub(crate) struct SnowflakeGenerator {
    last: AtomicU64,
}

impl SnowflakeGenerator {
    /// The next id for the current time.
    pub(crate) fn next(&self) -> u64 {
        self.next_at(now_ms())
    }

    /// The next id for `unix_ms`, or one past the last id if that is larger.
    pub(crate) fn next_at(&self, unix_ms: u64) -> u64 {
        // Worker 1, process 0: the low 12 bits count ids made in the same millisecond.
        let candidate = (unix_ms.saturating_sub(DISCORD_EPOCH_MS) << 22) | (1 << 17);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = candidate.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// Milliseconds since the Unix epoch at which `id` was made.
pub(crate) fn unix_ms_of(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// The current time in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit in u64 until the year 584 million")
}

/// Formats `unix_ms` as Discord does: `2024-01-31T12:34:56.789000+00:00`.
pub(crate) fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}000+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month and day of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_time_and_grow() {
        let generator = SnowflakeGenerator::default();
        let at = 1_700_000_000_123;
        let first = generator.next_at(at);
        let second = generator.next_at(at);
        assert!(second > first);
        assert_eq!(unix_ms_of(first), at);
        assert_eq!(unix_ms_of(second), at);
    }

    #[test]
    fn a_known_discord_id_decodes_to_its_date() {
        // Discord's docs use 175928847299117063, made on 2016-04-30 11:18:25.796 UTC.
        assert_eq!(iso8601(unix_ms_of(175_928_847_299_117_063)), "2016-04-30T11:18:25.796000+00:00");
    }

    #[test]
    fn formats_leap_days_and_epoch() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
        // 2024-02-29T23:59:59.999Z
        assert_eq!(iso8601(1_709_251_199_999), "2024-02-29T23:59:59.999000+00:00");
    }
}
