//! Protobuf timestamps as the emulator compares and prints them.
//!
//! Owns the conversion of `google.protobuf.Timestamp` to a single integer of nanoseconds since
//! the Unix epoch (so intervals compare with `<`), and the RFC 3339 text used in error messages.
//! It must never accept a timestamp outside the range protobuf defines (years 1 to 9999, nanos
//! in `0..1e9`): such a value is reported as invalid instead of being clamped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// Nanoseconds since the Unix epoch; `i128` so that every valid timestamp fits with room for
/// adding durations.
pub(crate) type Nanos = i128;

/// 0001-01-01T00:00:00Z, the smallest valid `Timestamp.seconds`.
const MIN_SECONDS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the largest valid `Timestamp.seconds`.
const MAX_SECONDS: i64 = 253_402_300_799;

/// The timestamp as nanoseconds, or `None` when it is outside protobuf's valid range.
pub(crate) fn to_nanos(ts: &Timestamp) -> Option<Nanos> {
    let valid_seconds = (MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds);
    let valid_nanos = (0..1_000_000_000).contains(&ts.nanos);
    (valid_seconds && valid_nanos)
        .then(|| Nanos::from(ts.seconds) * 1_000_000_000 + Nanos::from(ts.nanos))
}

/// The current wall-clock time in nanoseconds.
pub(crate) fn now() -> Nanos {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_nanos() as Nanos,
        Err(before) => -(before.duration().as_nanos() as Nanos),
    }
}

/// A duration as nanoseconds.
pub(crate) fn duration_nanos(d: Duration) -> Nanos {
    d.as_nanos() as Nanos
}

/// RFC 3339 text in UTC with as many fractional digits as the value needs, for messages.
pub(crate) fn format(ts: &Timestamp) -> String {
    if ts.seconds < 0 || to_nanos(ts).is_none() {
        return format!("{{seconds: {}, nanos: {}}}", ts.seconds, ts.nanos);
    }
    // Non-negative and in range, checked just above.
    let at = UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32);
    if ts.nanos == 0 {
        humantime::format_rfc3339_seconds(at).to_string()
    } else if ts.nanos % 1_000_000 == 0 {
        humantime::format_rfc3339_millis(at).to_string()
    } else if ts.nanos % 1_000 == 0 {
        humantime::format_rfc3339_micros(at).to_string()
    } else {
        humantime::format_rfc3339_nanos(at).to_string()
    }
}

/// A duration the way the API words limits: `25h`, `5m`, `90s`.
pub(crate) fn format_limit(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        humantime::format_duration(d).to_string()
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A nanosecond count back as a protobuf timestamp.
pub(crate) fn from_nanos(nanos: Nanos) -> Timestamp {
    let seconds = nanos.div_euclid(1_000_000_000);
    let rest = nanos.rem_euclid(1_000_000_000);
    Timestamp {
        seconds: seconds as i64,
        nanos: rest as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_timestamps_are_invalid() {
        assert_eq!(
            to_nanos(&Timestamp {
                seconds: 1,
                nanos: -1
            }),
            None
        );
        assert_eq!(
            to_nanos(&Timestamp {
                seconds: 1,
                nanos: 1_000_000_000
            }),
            None
        );
        assert_eq!(
            to_nanos(&Timestamp {
                seconds: MAX_SECONDS + 1,
                nanos: 0
            }),
            None
        );
        assert_eq!(
            to_nanos(&Timestamp {
                seconds: 2,
                nanos: 5
            }),
            Some(2_000_000_005)
        );
    }

    #[test]
    fn format_uses_the_shortest_fraction() {
        assert_eq!(
            format(&Timestamp {
                seconds: 0,
                nanos: 0
            }),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            format(&Timestamp {
                seconds: 0,
                nanos: 5_000_000
            }),
            "1970-01-01T00:00:00.005Z"
        );
        assert_eq!(
            format(&Timestamp {
                seconds: 0,
                nanos: 7
            }),
            "1970-01-01T00:00:00.000000007Z"
        );
    }

    #[test]
    fn limits_read_like_the_api_words_them() {
        assert_eq!(format_limit(Duration::from_secs(25 * 3600)), "25h");
        assert_eq!(format_limit(Duration::from_secs(300)), "5m");
        assert_eq!(format_limit(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn nanos_round_trip_including_negative() {
        for n in [0, 1, -1, 1_500_000_000, -1_500_000_000] {
            assert_eq!(to_nanos(&from_nanos(n)), Some(n));
        }
    }
}
