//! Query-string and path parsing. Every function here is total: any input yields a value or a
//! precise [`ApiError`], never a panic (checked by property tests).

use crate::error::ApiError;

/// Default page size when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page size.
pub const MAX_LIMIT: usize = 100;

/// Response encoding of the chat routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `{"cursor": ..., "messages": [...]}` (the original API's shape).
    #[default]
    Json,
    /// One message object per line; the cursor goes to the `X-Cursor` and `Link` headers.
    Ndjson,
    /// A human log, one `[2024-01-10 01:01:01] #channel user: text` line per message
    /// (`text/plain`); the cursor goes to the headers as for NDJSON.
    Text,
    /// The exact IRC lines Twitch sent, one per line (`text/plain`); the cursor goes to the
    /// headers as for NDJSON.
    Raw,
}

/// Parameters of the chat routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatParams {
    /// Inclusive range, ms since the epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    pub limit: usize,
    pub after: Option<String>,
    pub format: Format,
    pub hide_deleted: bool,
}

/// Parameters of the streamer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamerParams {
    pub live: Option<bool>,
    pub limit: usize,
    pub after: Option<String>,
}

/// The decoded `key=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    /// Decodes a raw query string (`a=1&b=2`, `+` is a space, `%xx` escapes).
    pub fn parse(raw: &str) -> Self {
        Self(
            url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The single value of `name`; a parameter given twice is an error (which one would win is
    /// not obvious to the caller).
    pub fn get(&self, name: &'static str) -> Result<Option<&str>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(ApiError::InvalidParameter(format!(
                "the query parameter `{name}` is given more than once"
            )));
        }
        Ok(first)
    }

    /// All pairs, for rebuilding a URL.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Parses a broadcaster id path segment.
pub fn broadcaster_id(segment: &str) -> Result<i64, ApiError> {
    non_negative_id(segment).ok_or_else(|| ApiError::InvalidBroadcasterId(segment.to_string()))
}

/// Parses a user id path segment.
pub fn user_id(segment: &str) -> Result<i64, ApiError> {
    non_negative_id(segment).ok_or_else(|| ApiError::InvalidUserId(segment.to_string()))
}

fn non_negative_id(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Parses an ISO 8601 timestamp to ms since the epoch. Accepted:
/// `2024-01-10T01:01:01.011Z`, `…+01:00`, `…+0100`, `…` without an offset (UTC),
/// `2024-01-10T01:01` and `2024-01-10` (midnight UTC); a space may replace the `T`. A `+` of an
/// offset that arrived as a space (an unencoded `+` in a URL) is read as `+`.
pub fn timestamp_ms(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Some(ms) = tci_common::time::parse_iso8601_ms(s) {
        return Some(ms);
    }
    // "…T01:01:01 01:00": the `+` was decoded as a space.
    let i = s.rfind(' ')?;
    let suffix = &s[i + 1..];
    if (4..=5).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return tci_common::time::parse_iso8601_ms(&format!("{}+{suffix}", &s[..i]));
    }
    None
}

fn required_timestamp(q: &QueryPairs, name: &'static str) -> Result<i64, ApiError> {
    let v = q.get(name)?.ok_or(ApiError::MissingParameter(name))?;
    timestamp_ms(v).ok_or_else(|| ApiError::InvalidTimestamp {
        name,
        value: v.to_string(),
    })
}

fn limit(q: &QueryPairs) -> Result<usize, ApiError> {
    match q.get("limit")? {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(ApiError::InvalidLimit(v.to_string())),
        },
    }
}

fn after(q: &QueryPairs) -> Result<Option<String>, ApiError> {
    // An empty `after=` means "first page", as a client that always sends the parameter expects.
    Ok(q.get("after")?
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

fn boolean(q: &QueryPairs, name: &'static str) -> Result<Option<bool>, ApiError> {
    match q.get(name)? {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(v) => Err(ApiError::InvalidParameter(format!(
            "`{name}` must be true or false; got {v:?}"
        ))),
    }
}

/// Parses the chat routes' query string.
pub fn chat(q: &QueryPairs) -> Result<ChatParams, ApiError> {
    let start_ms = required_timestamp(q, "start")?;
    let end_ms = required_timestamp(q, "end")?;
    if end_ms < start_ms {
        return Err(ApiError::EndBeforeStart {
            start: q.get("start")?.unwrap_or_default().to_string(),
            end: q.get("end")?.unwrap_or_default().to_string(),
        });
    }
    let format = match q.get("format")? {
        None | Some("json") => Format::Json,
        Some("ndjson") => Format::Ndjson,
        Some("text") => Format::Text,
        Some("raw") => Format::Raw,
        Some(v) => {
            return Err(ApiError::InvalidParameter(format!(
                "`format` must be json, ndjson, text or raw; got {v:?}"
            )))
        }
    };
    Ok(ChatParams {
        start_ms,
        end_ms,
        limit: limit(q)?,
        after: after(q)?,
        format,
        hide_deleted: boolean(q, "hide_deleted")?.unwrap_or(false),
    })
}

/// Parses the streamer list's query string.
pub fn streamers(q: &QueryPairs) -> Result<StreamerParams, ApiError> {
    Ok(StreamerParams {
        live: boolean(q, "live")?,
        limit: limit(q)?,
        after: after(q)?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chat_of(s: &str) -> Result<ChatParams, ApiError> {
        chat(&QueryPairs::parse(s))
    }

    #[test]
    fn the_spec_sample_parses() {
        let p = chat_of(
            "start=2024-01-10T01:01:01.011Z&end=2024-01-30T23:59:59.000Z&limit=2&after=abc",
        )
        .expect("ok");
        assert_eq!(p.start_ms, 1_704_848_461_011);
        assert_eq!(p.end_ms, 1_706_659_199_000);
        assert_eq!(p.limit, 2);
        assert_eq!(p.after.as_deref(), Some("abc"));
        assert_eq!(p.format, Format::Json);
        assert!(!p.hide_deleted);
    }

    #[test]
    fn timestamp_forms() {
        let z = 1_704_848_461_011;
        assert_eq!(timestamp_ms("2024-01-10T01:01:01.011Z"), Some(z));
        assert_eq!(
            timestamp_ms("2024-01-10T01:01:01.011"),
            Some(z),
            "no offset = UTC"
        );
        assert_eq!(timestamp_ms("2024-01-10 01:01:01.011"), Some(z));
        assert_eq!(timestamp_ms("2024-01-10T02:01:01.011+01:00"), Some(z));
        assert_eq!(timestamp_ms("2024-01-10T02:01:01.011+0100"), Some(z));
        assert_eq!(
            timestamp_ms("2024-01-10T02:01:01.011 01:00"),
            Some(z),
            "unencoded + in a URL"
        );
        assert_eq!(timestamp_ms("2024-01-10T00:01:01.011-01:00"), Some(z));
        assert_eq!(timestamp_ms("2024-01-10"), Some(1_704_844_800_000));
        assert_eq!(timestamp_ms("2024-01-10T01:01"), Some(1_704_848_460_000));
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-01-10T25:00:00Z",
            "1706408359963",
            "2024-01-10T01:01:01.011Q",
        ] {
            assert_eq!(timestamp_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_are_precise() {
        let code = |s: &str| chat_of(s).expect_err(s).code();
        assert_eq!(code("end=2024-01-10"), "missing_parameter");
        assert_eq!(code("start=2024-01-10"), "missing_parameter");
        assert_eq!(code("start=x&end=2024-01-10"), "invalid_timestamp");
        assert_eq!(code("start=2024-01-11&end=2024-01-10"), "end_before_start");
        for l in ["0", "101", "-1", "abc", "", "2.5", " 5", "+5"] {
            assert_eq!(
                code(&format!("start=2024-01-10&end=2024-01-11&limit={l}")),
                "invalid_limit",
                "{l}"
            );
        }
        assert_eq!(
            code("start=2024-01-10&end=2024-01-11&format=xml"),
            "invalid_parameter"
        );
        assert_eq!(
            code("start=2024-01-10&end=2024-01-11&hide_deleted=yes"),
            "invalid_parameter"
        );
        assert_eq!(
            code("start=2024-01-10&start=2024-01-10&end=2024-01-11"),
            "invalid_parameter"
        );
        assert!(chat_of("start=2024-01-10&end=2024-01-10&limit=100&after=")
            .expect("ok")
            .after
            .is_none());
    }

    #[test]
    fn ids() {
        assert_eq!(broadcaster_id("24538518").expect("ok"), 24538518);
        assert_eq!(broadcaster_id("0").expect("ok"), 0);
        for bad in ["-1", "abc", "", "1.5", "99999999999999999999", "+1", " 1"] {
            assert_eq!(
                broadcaster_id(bad).expect_err(bad).code(),
                "invalid_broadcaster_id"
            );
            assert_eq!(user_id(bad).expect_err(bad).code(), "invalid_user_id");
        }
    }

    #[test]
    fn streamer_params() {
        let p = streamers(&QueryPairs::parse("live=true&limit=5")).expect("ok");
        assert_eq!((p.live, p.limit), (Some(true), 5));
        assert_eq!(streamers(&QueryPairs::parse("")).expect("ok").live, None);
        assert_eq!(
            streamers(&QueryPairs::parse("live=maybe"))
                .expect_err("bad")
                .code(),
            "invalid_parameter"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,120}") {
            let q = QueryPairs::parse(&s);
            let _ = chat(&q);
            let _ = streamers(&q);
            let _ = broadcaster_id(&s);
            let _ = timestamp_ms(&s);
        }

        #[test]
        fn never_panics_on_near_valid_input(
            a in "[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}[T ][0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{0,12})?)?([Zz]|[+ -][0-9]{2}:?[0-9]{2})?",
            l in "-?[0-9]{0,25}",
        ) {
            let q = QueryPairs::parse(&format!("start={a}&end={a}&limit={l}"));
            let _ = chat(&q);
        }

        #[test]
        fn valid_ranges_are_accepted(s in 0i64..4_000_000_000_000, d in 0i64..100_000_000, limit in 1usize..=100) {
            let fmt = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default();
            let p = chat_of(&format!("start={}&end={}&limit={limit}", fmt(s), fmt(s + d))).expect("valid");
            prop_assert_eq!((p.start_ms, p.end_ms, p.limit), (s, s + d, limit));
        }
    }
}
