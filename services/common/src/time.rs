//! Timestamps given by people: API query parameters, `chat-ingestor backfill --from/--to`.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Parses an ISO 8601 timestamp to ms since the epoch: RFC 3339 (`2024-01-10T01:01:01.011Z`,
/// `…+01:00`), an offset without colon (`+0100`), a space instead of `T`, no seconds
/// (`2024-01-10T01:01`), or a date alone (midnight). **No offset means UTC.** `None` when it is
/// none of these.
pub fn parse_iso8601_ms(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_millis());
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let z = 1_704_848_461_011;
        assert_eq!(parse_iso8601_ms("2024-01-10T01:01:01.011Z"), Some(z));
        assert_eq!(parse_iso8601_ms("2024-01-10T02:01:01.011+01:00"), Some(z));
        assert_eq!(parse_iso8601_ms("2024-01-10T02:01:01.011+0100"), Some(z));
        assert_eq!(parse_iso8601_ms("2024-01-10 01:01:01.011"), Some(z));
        assert_eq!(
            parse_iso8601_ms("2024-01-10T01:01:01.011"),
            Some(z),
            "no offset = UTC"
        );
        assert_eq!(parse_iso8601_ms("2024-01-10"), Some(1_704_844_800_000));
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-01-10T25:00:00Z",
            "1704848461011",
        ] {
            assert_eq!(parse_iso8601_ms(bad), None, "{bad}");
        }
    }
}
