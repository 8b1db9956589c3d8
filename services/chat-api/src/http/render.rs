//! Response bodies. The JSON shape, key order and 2-space indentation are those of the original
//! service's sample (`{"cursor": …, "messages": [{"broadcaster_id", "message", "message_id",
//! "timestamp"}]}`), with `cursor` present only when another page may exist.

use serde::Serialize;
use warp::{
    http::{HeaderValue, StatusCode},
    reply::Response,
};

use super::super::{params::QueryPairs, store::ChatRow, store::StreamerRow};

/// The serde shape of a chat page: the reference the hand-written writers are tested against.
#[cfg(test)]
#[derive(Serialize)]
struct MessageOut<'a> {
    broadcaster_id: i64,
    message: &'a str,
    message_id: &'a str,
    timestamp: i64,
}

#[cfg(test)]
#[derive(Serialize)]
struct ChatBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    messages: Vec<MessageOut<'a>>,
}

#[derive(Serialize)]
struct StreamerOut<'a> {
    broadcaster_id: i64,
    login: Option<&'a str>,
    display_name: Option<&'a str>,
    first_seen: Option<String>,
    last_seen_live: Option<String>,
    live: bool,
    title: Option<&'a str>,
    game_name: Option<&'a str>,
    language: Option<&'a str>,
}

#[derive(Serialize)]
struct StreamersBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    streamers: Vec<StreamerOut<'a>>,
}

#[cfg(test)]
fn messages(broadcaster_id: i64, rows: &[ChatRow]) -> Vec<MessageOut<'_>> {
    rows.iter()
        .map(|r| MessageOut {
            broadcaster_id,
            message: &r.message,
            message_id: &r.message_id,
            timestamp: r.sent_ts,
        })
        .collect()
}

fn json_response<T: Serialize>(body: &T) -> Response {
    match serde_json::to_vec_pretty(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut r = Response::new(bytes.into());
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r
        }
        // Serializing strings and integers cannot fail; answer a plain 500 if it ever does.
        Err(_) => {
            let mut r = Response::new("{\"error\": {\"code\": \"internal_error\", \"message\": \"cannot encode the response\"}}\n".into());
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

/// The chat page as JSON, written directly into one buffer sized up front: byte for byte what
/// `serde_json::to_vec_pretty` of [`ChatBody`] gives (a property test checks it), without its
/// per-call writer indirection and without growing (and copying) a 100 KB buffer as it fills.
/// Each row's `message` arrives already escaped for embedding ([`Body::EmbeddedMessage`]: the
/// store renders it that way in one pass), so it is copied, not escaped again.
///
/// [`Body::EmbeddedMessage`]: chat_store::cql::Body::EmbeddedMessage
pub fn chat_json(broadcaster_id: i64, rows: &[ChatRow], cursor: Option<&str>) -> Response {
    let mut r = Response::new(chat_json_bytes(broadcaster_id, rows, cursor).into());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// Bytes of [`chat_json`].
fn chat_json_bytes(broadcaster_id: i64, rows: &[ChatRow], cursor: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(page_capacity(rows, cursor, 128));
    out.extend_from_slice(b"{\n");
    if let Some(c) = cursor {
        out.extend_from_slice(b"  \"cursor\": ");
        json_str(&mut out, c);
        out.extend_from_slice(b",\n");
    }
    if rows.is_empty() {
        out.extend_from_slice(b"  \"messages\": []\n}\n");
        return out;
    }
    out.extend_from_slice(b"  \"messages\": [");
    let mut ints = itoa::Buffer::new();
    for (i, r) in rows.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n    {\n" } else { b",\n    {\n" });
        out.extend_from_slice(b"      \"broadcaster_id\": ");
        out.extend_from_slice(ints.format(broadcaster_id).as_bytes());
        out.extend_from_slice(b",\n      \"message\": ");
        embedded_str(&mut out, &r.message);
        out.extend_from_slice(b",\n      \"message_id\": ");
        json_str(&mut out, &r.message_id);
        out.extend_from_slice(b",\n      \"timestamp\": ");
        out.extend_from_slice(ints.format(r.sent_ts).as_bytes());
        out.extend_from_slice(b"\n    }");
    }
    out.extend_from_slice(b"\n  ]\n}\n");
    out
}

/// Room for a page: the messages as they are (already escaped), the ids and the cursor escaped
/// (rarely more than 1/4 longer; the buffer grows if one is), plus `per_row` bytes of keys and
/// numbers per row.
fn page_capacity(rows: &[ChatRow], cursor: Option<&str>, per_row: usize) -> usize {
    let (messages, ids) = rows.iter().fold((0, 0), |(m, i), r| {
        (m + r.message.len(), i + r.message_id.len())
    });
    let escaped = ids + cursor.map_or(0, str::len);
    64 + messages + escaped + escaped / 4 + rows.len() * per_row
}

/// Appends `s` as a JSON string literal, escaped exactly as serde_json escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    tci_schemas::escape_json_content(out, s);
    out.push(b'"');
}

/// Appends a string literal whose content `escaped` already is (see [`chat_json`]).
fn embedded_str(out: &mut Vec<u8>, escaped: &str) {
    out.push(b'"');
    out.extend_from_slice(escaped.as_bytes());
    out.push(b'"');
}

/// The chat page as NDJSON: one message object per line. The cursor is in `X-Cursor` and in a
/// `Link: <next page URL>; rel="next"` header.
pub fn chat_ndjson(
    broadcaster_id: i64,
    rows: &[ChatRow],
    cursor: Option<&str>,
    path: &str,
    q: &QueryPairs,
) -> Response {
    let mut body = Vec::with_capacity(page_capacity(rows, None, 80));
    let mut ints = itoa::Buffer::new();
    // What serde_json::to_writer of one MessageOut gives, a line each (a property test checks).
    for r in rows {
        body.extend_from_slice(b"{\"broadcaster_id\":");
        body.extend_from_slice(ints.format(broadcaster_id).as_bytes());
        body.extend_from_slice(b",\"message\":");
        embedded_str(&mut body, &r.message);
        body.extend_from_slice(b",\"message_id\":");
        json_str(&mut body, &r.message_id);
        body.extend_from_slice(b",\"timestamp\":");
        body.extend_from_slice(ints.format(r.sent_ts).as_bytes());
        body.extend_from_slice(b"}\n");
    }
    let mut r = Response::new(body.into());
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-ndjson"),
    );
    next_page_headers(&mut r, cursor, path, q);
    r
}

/// The chat page as a human log (`text/plain; charset=utf-8`), one line per message:
/// `[2024-01-10 01:01:01] #channel user: text` (UTC, the sender's login; `/me` messages as
/// `user: /me text`). The cursor is in `X-Cursor` and `Link`, as for NDJSON.
pub fn chat_text(rows: &[ChatRow], cursor: Option<&str>, path: &str, q: &QueryPairs) -> Response {
    let mut body = String::with_capacity(rows.iter().map(|r| r.message.len() + 22).sum());
    let mut unreadable = 0usize;
    // Each row's `message` is its log text (`Body::LogText`: `#channel login: text`), empty
    // when the row had none (the store logged and counted it).
    for row in rows {
        if row.message.is_empty() {
            unreadable += 1;
            continue;
        }
        let when = chrono::DateTime::from_timestamp_millis(row.sent_ts)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        for part in ["[", &when, "] ", &row.message, "\n"] {
            body.push_str(part);
        }
    }
    plain_text(
        body.into_bytes(),
        ("x-unreadable-messages", unreadable),
        cursor,
        path,
        q,
    )
}

/// The chat page as the IRC lines Twitch sent (`text/plain; charset=utf-8`), one per line. Rows
/// stored before the raw line was kept (Avro schema version 1) have none: they are left out and
/// counted in `X-Raw-Unavailable`. The cursor is in `X-Cursor` and `Link`, as for NDJSON.
pub fn chat_raw(rows: &[ChatRow], cursor: Option<&str>, path: &str, q: &QueryPairs) -> Response {
    let mut body = Vec::with_capacity(rows.iter().map(|r| r.message.len() + 1).sum());
    let mut unavailable = 0usize;
    for row in rows {
        if row.message.is_empty() {
            unavailable += 1;
            continue;
        }
        body.extend_from_slice(row.message.as_bytes());
        body.push(b'\n');
    }
    plain_text(body, ("x-raw-unavailable", unavailable), cursor, path, q)
}

/// A `text/plain` page: the body, a count of rows left out in `skipped` (a header, only when
/// non-zero), and the next-page headers.
fn plain_text(
    body: Vec<u8>,
    skipped: (&'static str, usize),
    cursor: Option<&str>,
    path: &str,
    q: &QueryPairs,
) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if skipped.1 > 0 {
        r.headers_mut()
            .insert(skipped.0, HeaderValue::from(skipped.1));
    }
    next_page_headers(&mut r, cursor, path, q);
    r
}

/// `X-Cursor: <cursor>` and `Link: <next page URL>; rel="next"` when another page may exist.
fn next_page_headers(r: &mut Response, cursor: Option<&str>, path: &str, q: &QueryPairs) {
    let h = r.headers_mut();
    if let Some(c) = cursor {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in q.pairs().iter().filter(|(k, _)| k != "after") {
            next.append_pair(k, v);
        }
        next.append_pair("after", c);
        if let Ok(v) = HeaderValue::from_str(c) {
            h.insert("x-cursor", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("<{path}?{}>; rel=\"next\"", next.finish())) {
            h.insert("link", v);
        }
    }
}

/// ISO 8601 UTC with milliseconds.
pub fn iso8601(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The streamer list as JSON.
pub fn streamers_json(
    rows: &[StreamerRow],
    cursor: Option<&str>,
    is_live: impl Fn(&StreamerRow) -> bool,
) -> Response {
    let streamers = rows
        .iter()
        .map(|r| StreamerOut {
            broadcaster_id: r.broadcaster_id,
            login: r.login.as_deref(),
            display_name: r.display_name.as_deref(),
            first_seen: r.first_seen.and_then(iso8601),
            last_seen_live: r.last_seen_live.and_then(iso8601),
            live: is_live(r),
            title: r.title.as_deref(),
            game_name: r.game_name.as_deref(),
            language: r.language.as_deref(),
        })
        .collect();
    json_response(&StreamersBody { cursor, streamers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_shape_byte_for_byte() {
        let rows = vec![embedded(&row(
            1706408359963,
            "0a232bf9-2e6a-4bd4-85e3-c9800b68fedb",
            "{\"text\": \"hi\"}",
        ))];
        let r = chat_json(24538518, &rows, Some("abc"));
        assert_eq!(r.headers()["content-type"], "application/json");
        let body = String::from_utf8(chat_json_bytes(24538518, &rows, Some("abc"))).expect("utf8");
        let expected = "{\n  \"cursor\": \"abc\",\n  \"messages\": [\n    {\n      \"broadcaster_id\": 24538518,\n      \"message\": \"{\\\"text\\\": \\\"hi\\\"}\",\n      \"message_id\": \"0a232bf9-2e6a-4bd4-85e3-c9800b68fedb\",\n      \"timestamp\": 1706408359963\n    }\n  ]\n}\n";
        assert_eq!(body, expected);
        let last = String::from_utf8(chat_json_bytes(1, &[], None)).expect("utf8");
        assert_eq!(last, "{\n  \"messages\": []\n}\n");
    }

    fn row(ts: i64, id: &str, message: &str) -> ChatRow {
        ChatRow {
            sent_ts: ts,
            message_id: id.into(),
            message: message.into(),
            user_id: None,
        }
    }

    /// `r` as the store hands it to the json and ndjson writers (`Body::EmbeddedMessage`).
    fn embedded(r: &ChatRow) -> ChatRow {
        let mut v = Vec::new();
        tci_schemas::escape_json_content(&mut v, &r.message);
        ChatRow {
            message: String::from_utf8(v).expect("utf8"),
            ..r.clone()
        }
    }

    fn body(r: Response) -> String {
        let bytes = futures::executor::block_on(http_body_util::BodyExt::collect(r.into_body()))
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf8")
    }

    #[test]
    fn text_and_raw_formats() {
        let q = QueryPairs::parse("start=2024-01-10&end=2024-01-11&format=text");
        let rows = vec![
            row(1704848461000, "a", "#chan bob: h\u{e9} \"q\""),
            row(1704848462000, "b", "#chan amy: /me waves"),
            // A row the store could not read a log text from.
            row(1704848463000, "c", ""),
        ];
        let r = chat_text(&rows, Some("next"), "/v1.0/1/chat", &q);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.headers()["x-cursor"], "next");
        assert_eq!(r.headers()["x-unreadable-messages"], "1");
        assert!(r.headers()["link"]
            .to_str()
            .expect("ascii")
            .contains("format=text"));
        assert_eq!(
            body(r),
            "[2024-01-10 01:01:01] #chan bob: h\u{e9} \"q\"\n[2024-01-10 01:01:02] #chan amy: /me waves\n"
        );

        let rows = vec![
            row(1, "a", "@id=a :u!u@u PRIVMSG #c :hi"),
            row(2, "b", ""),
            row(3, "c", "@id=c :u!u@u PRIVMSG #c Cheer1"),
        ];
        let r = chat_raw(&rows, None, "/v1.0/1/chat", &q);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.headers()["x-raw-unavailable"], "1");
        assert!(r.headers().get("x-cursor").is_none());
        assert_eq!(
            body(r),
            "@id=a :u!u@u PRIVMSG #c :hi\n@id=c :u!u@u PRIVMSG #c Cheer1\n"
        );
    }

    /// What serde_json gives for the same page: the reference the hand-written writers match.
    fn serde_pretty(broadcaster_id: i64, rows: &[ChatRow], cursor: Option<&str>) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(&ChatBody {
            cursor,
            messages: messages(broadcaster_id, rows),
        })
        .expect("json");
        v.push(b'\n');
        v
    }

    fn serde_lines(broadcaster_id: i64, rows: &[ChatRow]) -> Vec<u8> {
        let mut v = Vec::new();
        for m in messages(broadcaster_id, rows) {
            serde_json::to_writer(&mut v, &m).expect("json");
            v.push(b'\n');
        }
        v
    }

    proptest::proptest! {
        #[test]
        fn pages_are_byte_for_byte_what_serde_json_writes(
            broadcaster_id in proptest::prelude::any::<i64>(),
            rows in proptest::collection::vec(
                (proptest::prelude::any::<i64>(), "\\PC{0,12}", proptest::prelude::any::<String>()),
                0..6,
            ),
            cursor in proptest::option::of("[ -~]{0,20}"),
            controls in proptest::collection::vec(0u8..0x20, 0..8),
        ) {
            let mut rows: Vec<ChatRow> = rows
                .into_iter()
                .map(|(ts, id, message)| row(ts, &id, &message))
                .collect();
            // Every control character, quotes and backslashes, in stored-JSON-like text.
            let tricky: String = controls.iter().map(|&c| char::from(c)).collect();
            rows.push(row(1, "q\"\\", &format!("{{\"text\": \"a\\\"b\u{7f}\u{e9}{tricky}\"}}")));
            let escaped: Vec<ChatRow> = rows.iter().map(embedded).collect();
            proptest::prop_assert_eq!(
                chat_json_bytes(broadcaster_id, &escaped, cursor.as_deref()),
                serde_pretty(broadcaster_id, &rows, cursor.as_deref())
            );
            proptest::prop_assert_eq!(chat_json_bytes(broadcaster_id, &[], cursor.as_deref()), serde_pretty(broadcaster_id, &[], cursor.as_deref()));
            let q = QueryPairs::parse("start=1&end=2&format=ndjson");
            let ndjson = body(chat_ndjson(broadcaster_id, &escaped, None, "/v1.0/1/chat", &q));
            proptest::prop_assert_eq!(ndjson.into_bytes(), serde_lines(broadcaster_id, &rows));
        }
    }

    #[test]
    fn iso_dates() {
        assert_eq!(
            iso8601(1706408359963).as_deref(),
            Some("2024-01-28T02:19:19.963Z")
        );
    }
}
