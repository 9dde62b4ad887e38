//! Run ids: one per run, the same for every attempt and for a run resumed with
//! `pipectl run --resume RUN_ID`. Loads record the id with each commit (a Delta `txn` action, an
//! S3 marker object, a row in `_pipectl_loads` in the same SQL transaction), so a resumed run
//! skips the loads that already published and writes only the rest.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A run's id: `20261128T010255Z-3fa9c1` when generated; any 1–64 characters of letters,
/// digits, `.`, `_` and `-` (not starting with `.` or `-`) when given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

/// A `--resume` value that cannot be a run id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid run id \"{shown}\": {why}")]
pub struct InvalidRunId {
    shown: String,
    why: &'static str,
}

impl RunId {
    /// A new id: the UTC start time to the second and 24 bits that differ between processes
    /// and between runs of one process.
    pub fn generate() -> RunId {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let (y, mo, d) = civil_date(secs / 86_400);
        let t = secs % 86_400;
        // FNV-1a over the nanoseconds, the pid and a counter: cheap, and enough to keep two
        // runs started in the same second apart.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for v in [
            u64::from(now.subsec_nanos()),
            u64::from(std::process::id()),
            N.fetch_add(1, Ordering::Relaxed),
        ] {
            for b in v.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        RunId(format!(
            "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z-{:06x}",
            t / 3600,
            t / 60 % 60,
            t % 60,
            h & 0xff_ffff
        ))
    }

    /// Checks an id given by the user (`--resume`).
    pub fn parse(text: &str) -> Result<RunId, InvalidRunId> {
        let shown: String = text.chars().take(80).collect();
        let fail = |why| InvalidRunId {
            shown: shown.clone(),
            why,
        };
        if text.is_empty() || text.len() > 64 {
            return Err(fail("it must have 1 to 64 characters"));
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(fail("only letters, digits, '.', '_' and '-' are allowed"));
        }
        if text.starts_with(['.', '-']) {
            return Err(fail("it must not start with '.' or '-'"));
        }
        Ok(RunId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_785), (2026, 11, 28));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = RunId::generate();
        let b = RunId::generate();
        assert_ne!(a, b);
        assert_eq!(RunId::parse(a.as_str()).as_ref(), Ok(&a));
        assert_eq!(a.as_str().len(), 23, "{a}");
    }

    #[rstest]
    #[case("", "1 to 64")]
    #[case(&"x".repeat(65), "1 to 64")]
    #[case("a/b", "only letters")]
    #[case("run id", "only letters")]
    #[case("ré", "only letters")]
    #[case("-x", "must not start")]
    #[case(".x", "must not start")]
    fn bad_ids(#[case] text: &str, #[case] why: &str) {
        let e = RunId::parse(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(why), "{text:?}: {e}");
    }
}
