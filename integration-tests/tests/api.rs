//! chat-api against the real Cassandra: the API is started in-process (`App::build` with the
//! HTTP and admin ports on 0), rows are written with the ingestor's CQL (messages, bucket index,
//! user logs), and every page is compared with what a direct CQL query returns. Responses are
//! checked against the committed OpenAPI document.

use std::collections::HashSet;

use chat_api::cursor::{Binding, CursorCodec, Position, RouteKind};
use chat_ingestor::decode::Record;
use chat_store::{
    bucket_of, day_of, user_shard, StoredChatRef, StoredChatTuple, BUCKET_MS, DAY_MS,
};
use integration_tests::TestEnv;
use scylla::client::session::Session;
use serde_json::Value;
use tci_schemas::{ChatMessage, ModerationEvent, ModerationKind};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "integration-test-cursor-secret";

/// The running API and its keyspace.
struct Api {
    base: String,
    admin: String,
    http: reqwest::Client,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Api {
    async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        let mut cfg = chat_api::Config {
            common: env.cfg.clone(),
            ..Default::default()
        };
        cfg.http.addr = "127.0.0.1:0".into();
        cfg.common.admin.addr = "127.0.0.1:0".into();
        cfg.cursor.secret = Some(SECRET.into());
        Self::start_with(cfg).await
    }

    async fn start_with(cfg: chat_api::Config) -> anyhow::Result<Self> {
        let token = CancellationToken::new();
        let app = chat_api::App::build(cfg, token.clone()).await?;
        let base = format!("http://{}", app.http_addr());
        let admin = format!("http://{}", app.admin_addr());
        let task = tokio::spawn(app.run());
        Ok(Self {
            base,
            admin,
            http: reqwest::Client::new(),
            token,
            task,
        })
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Ok((status, headers, r.text().await?))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.task.await??;
        Ok(())
    }
}

/// Writes rows exactly as chat-ingestor does: its own planner and writer (messages, bucket
/// index, user logs, CLEARMSG deletion marks), on a session of its own.
struct Writer {
    inner: chat_ingestor::writer::Writer,
    max_rows: usize,
}

impl Writer {
    async fn new(env: &TestEnv) -> anyhow::Result<Self> {
        let session = tci_common::cassandra::connect_once(&env.cfg.cassandra).await?;
        let settings = chat_ingestor::IngestConfig::default().writer_settings();
        let max_rows = settings.max_rows_per_batch;
        let inner = chat_ingestor::writer::Writer::prepare(
            std::sync::Arc::new(session),
            &env.cfg.cassandra.keyspace,
            settings,
        )
        .await?;
        Ok(Self { inner, max_rows })
    }

    async fn write_records(&self, records: &[Record]) -> anyhow::Result<()> {
        let token = CancellationToken::new();
        for chunk in records.chunks(1000) {
            let plan = chat_ingestor::writer::plan(chunk, self.max_rows);
            self.inner
                .write(&plan, &token)
                .await
                .map_err(|_| anyhow::anyhow!("the ingestor's writer gave up"))?;
        }
        Ok(())
    }

    async fn write_all(&self, msgs: &[ChatMessage]) -> anyhow::Result<()> {
        let records: Vec<Record> = msgs
            .iter()
            .map(|m| Record::Chat(Box::new(m.clone())))
            .collect();
        self.write_records(&records).await
    }

    /// A moderator deleted `m` (CLEARMSG a second after it was sent).
    async fn delete(&self, m: &ChatMessage) -> anyhow::Result<()> {
        let ev = ModerationEvent {
            broadcaster_id: m.broadcaster_id,
            kind: ModerationKind::ClearMsg,
            event_id: format!("clearmsg-{}", m.id),
            sent_timestamp: m.sent_timestamp + 1_000,
            channel: m.room.name.clone(),
            target_user_id: None,
            target_user_login: Some(m.user.name.clone()),
            target_message_id: Some(m.id.clone()),
            ban_duration_seconds: None,
            msg_id: None,
            text: Some(m.text.clone()),
            system_msg: None,
            raw_tags: Vec::new(),
            received_at: None,
            raw_line: None,
        };
        self.write_records(&[Record::Moderation(Box::new(ev))])
            .await
    }
}

/// Message `n` as chat-listener builds it from Twitch's line (so storage keeps the line and the
/// API renders the JSON from it), in a followers-only, slow-mode room.
fn message(broadcaster_id: i64, n: usize, ts: i64, user: i64) -> ChatMessage {
    // Ids in a different order from the insertion order, so the clustering order matters.
    let id = format!(
        "{:08x}-2e6a-4bd4-85e3-{n:012}",
        (n as u32).wrapping_mul(2_654_435_761)
    );
    let line = format!(
        "@badge-info=;badges=moderator/1;color=;display-name=User{user};emotes=;id={id};mod=1;room-id={broadcaster_id};subscriber=0;tmi-sent-ts={ts};turbo=0;user-id={user};user-type=mod :user{user}!user{user}@user{user}.tmi.twitch.tv PRIVMSG #sneakylol :message {n} h\u{e9}llo \u{1f438} \"quoted\" \\o/"
    );
    let mut rooms = tci_irc::record::RoomStates::new();
    let roomstate = format!("@emote-only=0;followers-only=0;r9k=0;room-id={broadcaster_id};slow=10;subs-only=0 :tmi.twitch.tv ROOMSTATE #sneakylol");
    rooms
        .apply(&tci_irc::irc::parse(&roomstate).expect("ROOMSTATE"))
        .expect("ROOMSTATE");
    tci_irc::record::build_chat_message(
        &tci_irc::irc::parse(&line).expect("PRIVMSG"),
        &rooms,
        ts + 5,
        &mut Default::default(),
    )
    .expect("PRIVMSG")
}

/// (timestamp, message_id, message) rows, exactly as a direct CQL query returns them.
type Row = (i64, String, String);

async fn cql_rows(
    s: &Session,
    ks: &str,
    broadcaster_id: i64,
    user: Option<i64>,
    start: i64,
    end: i64,
) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::new();
    let mut scratch = tci_schemas::PyJson::default();
    let mut push = |t: StoredChatTuple, out: &mut Vec<Row>| -> anyhow::Result<()> {
        StoredChatRef::from(&t).message_json(broadcaster_id, &mut scratch)?;
        out.push((t.0, t.1, scratch.as_str().to_owned()));
        Ok(())
    };
    let stored = |rows: scylla::response::query_result::QueryResult| -> anyhow::Result<Vec<StoredChatTuple>> {
        Ok(rows
            .into_rows_result()?
            .rows::<StoredChatTuple>()?
            .collect::<Result<Vec<_>, _>>()?)
    };
    match user {
        None => {
            let mut b = bucket_of(start);
            while b <= bucket_of(end) {
                let rows = s
                    .query_unpaged(
                        chat_store::cql::select_chat_page(ks),
                        (broadcaster_id, b, start, end),
                    )
                    .await?;
                for r in stored(rows)? {
                    push(r, &mut out)?;
                }
                b += BUCKET_MS;
            }
        }
        Some(u) => {
            // The by-user index, day by day, then each message from chat_messages by its key.
            let mut day = day_of(start);
            while day <= day_of(end) {
                let index = s
                    .query_unpaged(
                        chat_store::cql::select_user_index_page(ks),
                        (broadcaster_id, day, user_shard(u), u, start, end),
                    )
                    .await?
                    .into_rows_result()?
                    .rows::<(i64, String)>()?
                    .collect::<Result<Vec<_>, _>>()?;
                for (ts, id) in index {
                    let rows = s
                        .query_unpaged(
                            chat_store::cql::select_chat_row(ks),
                            (broadcaster_id, bucket_of(ts), ts, &id),
                        )
                        .await?;
                    for r in stored(rows)? {
                        push(r, &mut out)?;
                    }
                }
                day += DAY_MS;
            }
        }
    }
    Ok(out)
}

fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// Minimal OpenAPI 3.0 schema check: $ref, type, nullable, required, properties,
/// additionalProperties=false, items, enum, minimum/maximum, maxItems.
fn check_schema(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return check_schema(doc, &doc["components"]["schemas"][name], v, at);
    }
    if v.is_null() {
        return if schema["nullable"] == true {
            Ok(())
        } else {
            Err(format!("{at}: null not allowed"))
        };
    }
    let ok = match schema["type"].as_str() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {v} is not a {}", schema["type"]));
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let (Some(min), Some(x)) = (schema["minimum"].as_i64(), v.as_i64()) {
        if x < min {
            return Err(format!("{at}: {x} < {min}"));
        }
    }
    if let Some(o) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            let k = r.as_str().unwrap_or_default();
            if !o.contains_key(k) {
                return Err(format!("{at}: missing {k}"));
            }
        }
        for (k, val) in o {
            match schema["properties"].get(k) {
                Some(s) => check_schema(doc, s, val, &format!("{at}.{k}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: unexpected key {k}"))
                }
                None => {}
            }
        }
    }
    if let Some(a) = v.as_array() {
        if let Some(max) = schema["maxItems"].as_u64() {
            if a.len() as u64 > max {
                return Err(format!("{at}: {} items > {max}", a.len()));
            }
        }
        for (i, item) in a.iter().enumerate() {
            check_schema(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn openapi() -> Value {
    serde_json::from_str(chat_api::http::OPENAPI_JSON)
        .expect("the committed OpenAPI document is JSON")
}

/// Checks a JSON response body against the documented schema of (path template, status).
fn conforms(doc: &Value, template: &str, status: u16, body: &str) -> Value {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{template} {status}: not JSON ({e}): {body}"));
    let resp = &doc["paths"][template]["get"]["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{template}: status {status} is not documented"
    );
    let schema = &resp["content"]["application/json"]["schema"];
    if let Err(e) = check_schema(doc, schema, &v, "$") {
        panic!("{template} {status}: response violates the OpenAPI schema: {e}\n{body}");
    }
    v
}

const CHAT: &str = "/v1.0/{broadcaster_id}/chat";
const USER_CHAT: &str = "/v1.0/{broadcaster_id}/users/{user_id}/chat";

/// Follows cursors from the first page to the last; returns the rows and the number of calls.
async fn walk(
    api: &Api,
    doc: &Value,
    path: &str,
    template: &str,
    start: &str,
    end: &str,
    limit: usize,
) -> anyhow::Result<(Vec<Row>, usize)> {
    let limit_s = limit.to_string();
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    let mut calls = 0;
    loop {
        let mut q = vec![("start", start), ("end", end), ("limit", limit_s.as_str())];
        if let Some(a) = &after {
            q.push(("after", a));
        }
        let (status, _, body) = api.get(path, &q).await?;
        calls += 1;
        assert_eq!(status, 200, "{body}");
        let v = conforms(doc, template, 200, &body);
        let msgs = v["messages"].as_array().expect("messages");
        assert!(msgs.len() <= limit);
        for m in msgs {
            rows.push((
                m["timestamp"].as_i64().expect("timestamp"),
                m["message_id"].as_str().expect("id").to_string(),
                m["message"].as_str().expect("message").to_string(),
            ));
        }
        match v.get("cursor").and_then(Value::as_str) {
            Some(c) => after = Some(c.to_string()),
            None => return Ok((rows, calls)),
        }
        assert!(calls < 100_000, "walk does not end");
    }
}

const B: i64 = 24538518;

/// Query-string pairs.
type Query<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test]
async fn walking_a_range_returns_exactly_the_rows_cql_returns() -> anyhow::Result<()> {
    let env = TestEnv::new("api_walk");
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let w = Writer::new(&env).await?;
    // A bucket edge; 500 messages in its last millisecond, 300 in the first one after it, two
    // empty buckets, 40 messages spread over a later bucket, and messages outside the range.
    let edge = bucket_of(1_706_408_359_963) + BUCKET_MS;
    let mut msgs = Vec::new();
    let mut n = 0;
    let mut push = |ts: i64, msgs: &mut Vec<ChatMessage>| {
        msgs.push(message(B, n, ts, 1000 + (n % 3) as i64));
        n += 1;
    };
    for _ in 0..500 {
        push(edge - 1, &mut msgs);
    }
    for _ in 0..300 {
        push(edge, &mut msgs);
    }
    for i in 0..40 {
        push(edge + 3 * BUCKET_MS + i * 7001, &mut msgs);
    }
    for ts in [
        edge - 2 * BUCKET_MS,
        edge - BUCKET_MS - 1,
        edge + 2 * 86_400_000,
    ] {
        push(ts, &mut msgs);
    }
    msgs.push(message(B + 1, 99_999, edge, 1000)); // another channel
    w.write_all(&msgs).await?;

    let api = Api::start(&env).await?;
    let doc = openapi();
    let (start_ms, end_ms) = (edge - BUCKET_MS - 1, edge + 86_400_000);
    let (start, end) = (iso(start_ms), iso(end_ms));
    let expected = cql_rows(&session, &ks, B, None, start_ms, end_ms).await?;
    assert_eq!(expected.len(), 500 + 300 + 40 + 1, "test data as intended");
    let path = format!("/v1.0/{B}/chat");
    for limit in [1, 2, 7, 100] {
        let (got, calls) = walk(&api, &doc, &path, CHAT, &start, &end, limit).await?;
        assert_eq!(got.len(), expected.len(), "limit {limit}: count");
        assert!(
            got == expected,
            "limit {limit}: pages differ from the CQL rows"
        );
        assert!(
            calls >= expected.len().div_ceil(limit),
            "limit {limit}: {calls} calls"
        );
    }
    // The message string is the ingestor's rendering, byte for byte.
    let by_id: std::collections::HashMap<&str, &ChatMessage> =
        msgs.iter().map(|m| (m.id.as_str(), m)).collect();
    assert!(expected
        .iter()
        .all(|(_, id, m)| by_id[id.as_str()].to_spec_json() == *m));

    // User logs: one chatter, same rules, from user_chat_index.
    let user_expected = cql_rows(&session, &ks, B, Some(1001), start_ms, end_ms).await?;
    assert!(user_expected.len() > 250);
    let (got, _) = walk(
        &api,
        &doc,
        &format!("/v1.0/{B}/users/1001/chat"),
        USER_CHAT,
        &start,
        &end,
        7,
    )
    .await?;
    assert!(
        got == user_expected,
        "user log pages differ from the CQL rows"
    );

    // NDJSON: same rows, cursor in X-Cursor and Link.
    let mut rows: Vec<Row> = Vec::new();
    let mut after = String::new();
    loop {
        let (status, headers, body) = api
            .get(
                &path,
                &[
                    ("start", &start),
                    ("end", &end),
                    ("limit", "100"),
                    ("format", "ndjson"),
                    ("after", &after),
                ],
            )
            .await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["content-type"], "application/x-ndjson");
        for line in body.lines() {
            let m: Value = serde_json::from_str(line)?;
            if let Err(e) = check_schema(
                &doc,
                &serde_json::json!({"$ref": "#/components/schemas/ChatMessage"}),
                &m,
                "$",
            ) {
                panic!("ndjson line violates the schema: {e}");
            }
            rows.push((
                m["timestamp"].as_i64().unwrap_or_default(),
                m["message_id"].as_str().unwrap_or_default().into(),
                m["message"].as_str().unwrap_or_default().into(),
            ));
        }
        match headers.get("x-cursor") {
            Some(c) => {
                after = c.to_str()?.to_string();
                let link = headers["link"].to_str()?;
                assert!(
                    link.starts_with(&format!("<{path}?"))
                        && link.ends_with("; rel=\"next\"")
                        && link.contains(&after),
                    "{link}"
                );
            }
            None => break,
        }
    }
    assert!(rows == expected, "ndjson pages differ from the CQL rows");

    // The sample's shape: exactly these keys, integer broadcaster id and timestamp.
    let (_, headers, body) = api
        .get(&path, &[("start", &start), ("end", &end), ("limit", "2")])
        .await?;
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body)?;
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["cursor", "messages"]);
    let m0: Vec<&String> = v["messages"][0]
        .as_object()
        .expect("object")
        .keys()
        .collect();
    assert_eq!(m0, ["broadcaster_id", "message", "message_id", "timestamp"]);
    assert_eq!(v["messages"][0]["broadcaster_id"], B);
    assert!(
        body.starts_with("{\n  \"cursor\": \""),
        "pretty-printed like the sample"
    );

    api.stop().await?;
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test]
async fn thirty_days_over_two_hours_of_chat_costs_two_calls() -> anyhow::Result<()> {
    let env = TestEnv::new("api_sparse");
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let w = Writer::new(&env).await?;
    let day0 = bucket_of(1_706_400_000_000);
    let chat_from = day0 + 12 * 86_400_000;
    let msgs: Vec<ChatMessage> = (0..120)
        .map(|i| message(B, i, chat_from + (i as i64) * 60_000, 7))
        .collect();
    w.write_all(&msgs).await?;
    let api = Api::start(&env).await?;
    let (start_ms, end_ms) = (day0, day0 + 30 * 86_400_000);
    let expected = cql_rows(&session, &ks, B, None, start_ms, end_ms).await?;
    assert_eq!(expected.len(), 120);
    let (got, calls) = walk(
        &api,
        &openapi(),
        &format!("/v1.0/{B}/chat"),
        CHAT,
        &iso(start_ms),
        &iso(end_ms),
        100,
    )
    .await?;
    assert!(got == expected);
    assert_eq!(
        calls, 2,
        "8640 buckets in range, 24 with chat: the bucket index skips the rest"
    );

    // A chatter who spoke on four days across three months (several 28-day periods of
    // user_chat_days) in another channel: a 90-day user log finds all four, in order.
    let sparse: Vec<ChatMessage> = [1, 29, 40, 80]
        .iter()
        .enumerate()
        .map(|(i, d)| message(B + 1, 500 + i, day0 + d * 86_400_000 + 1_000, 9))
        .collect();
    w.write_all(&sparse).await?;
    let end_ms = day0 + 90 * 86_400_000;
    let user_expected = cql_rows(&session, &ks, B + 1, Some(9), start_ms, end_ms).await?;
    let ids: Vec<&str> = user_expected.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        sparse.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        "test data as intended"
    );
    let (got, _) = walk(
        &api,
        &openapi(),
        &format!("/v1.0/{}/users/9/chat", B + 1),
        USER_CHAT,
        &iso(start_ms),
        &iso(end_ms),
        2,
    )
    .await?;
    assert!(got == user_expected, "the user log over three months");
    api.stop().await?;
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test]
async fn every_error_is_json_with_a_stable_code() -> anyhow::Result<()> {
    let env = TestEnv::new("api_errors");
    let session = env.migrate().await?;
    let w = Writer::new(&env).await?;
    let t0 = bucket_of(1_706_408_359_963);
    let msgs: Vec<ChatMessage> = (0..10)
        .map(|i| message(B, i, t0 + i as i64, 1000))
        .collect();
    w.write_all(&msgs).await?;
    let api = Api::start(&env).await?;
    let doc = openapi();
    let (start, end) = (iso(t0), iso(t0 + 60_000));
    let chat = format!("/v1.0/{B}/chat");
    let cases: Vec<(&str, String, Query, u16, &str)> = vec![
        ("no start", chat.clone(), vec![("end", &end)], 400, "missing_parameter"),
        ("no end", chat.clone(), vec![("start", &start)], 400, "missing_parameter"),
        ("bad start", chat.clone(), vec![("start", "yesterday"), ("end", &end)], 400, "invalid_timestamp"),
        ("bad end", chat.clone(), vec![("start", &start), ("end", "2024-02-30T00:00:00Z")], 400, "invalid_timestamp"),
        ("end before start", chat.clone(), vec![("start", &end), ("end", &start)], 400, "end_before_start"),
        ("limit 0", chat.clone(), vec![("start", &start), ("end", &end), ("limit", "0")], 400, "invalid_limit"),
        ("limit 101", chat.clone(), vec![("start", &start), ("end", &end), ("limit", "101")], 400, "invalid_limit"),
        ("limit text", chat.clone(), vec![("start", &start), ("end", &end), ("limit", "ten")], 400, "invalid_limit"),
        ("limit float", chat.clone(), vec![("start", &start), ("end", &end), ("limit", "2.5")], 400, "invalid_limit"),
        ("negative id", "/v1.0/-5/chat".into(), vec![("start", &start), ("end", &end)], 400, "invalid_broadcaster_id"),
        ("text id", "/v1.0/sneakylol/chat".into(), vec![("start", &start), ("end", &end)], 400, "invalid_broadcaster_id"),
        ("huge id", "/v1.0/99999999999999999999/chat".into(), vec![("start", &start), ("end", &end)], 400, "invalid_broadcaster_id"),
        ("text user", format!("/v1.0/{B}/users/bob/chat"), vec![("start", &start), ("end", &end)], 400, "invalid_user_id"),
        ("garbage cursor", chat.clone(), vec![("start", &start), ("end", &end), ("after", "%%%")], 400, "invalid_cursor"),
        ("the spec's cursor", chat.clone(), vec![("start", &start), ("end", &end), ("after", "3Cj7V5upmmx1b6rawVelGDvOKUpMIqwCaC9cW2zqqDQbzLM7d22rBjRAnMUNT04afSQDqRWpEwSO2DPNSXkJmCbEg")], 400, "invalid_cursor"),
        ("bad format", chat.clone(), vec![("start", &start), ("end", &end), ("format", "xml")], 400, "invalid_parameter"),
        ("bad live", "/v1.0/streamers".into(), vec![("live", "maybe")], 400, "invalid_parameter"),
        ("unknown route", "/v1.0/1/messages".into(), vec![], 404, "not_found"),
        ("unknown top-level path", "/nope".into(), vec![], 404, "not_found"),
    ];
    for (name, path, q, status, code) in &cases {
        let (s, headers, body) = api.get(path, q).await?;
        assert_eq!(
            (s, headers["content-type"].to_str()?),
            (*status, "application/json"),
            "{name}: {body}"
        );
        let template = if path.contains("/users/") {
            USER_CHAT
        } else if path.contains("streamers") {
            "/v1.0/streamers"
        } else {
            CHAT
        };
        let v = conforms(&doc, template, *status, &body);
        assert_eq!(v["error"]["code"], *code, "{name}: {body}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
            "{name}: {body}"
        );
    }
    // Other methods: 405 with Allow: GET.
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let r = api
            .http
            .request(
                method.clone(),
                format!("{}{chat}?start={start}&end={end}", api.base),
            )
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "GET");
        let v: Value = r.json().await?;
        assert_eq!(v["error"]["code"], "method_not_allowed");
    }

    // Cursors: a real one works; altered, truncated and foreign ones are refused with 400.
    let (_, _, body) = api
        .get(&chat, &[("start", &start), ("end", &end), ("limit", "3")])
        .await?;
    let v: Value = serde_json::from_str(&body)?;
    let cursor = v["cursor"].as_str().expect("a cursor").to_string();
    let (s, _, _) = api
        .get(
            &chat,
            &[
                ("start", &start),
                ("end", &end),
                ("limit", "3"),
                ("after", &cursor),
            ],
        )
        .await?;
    assert_eq!(s, 200);
    let mut bad: Vec<(String, String)> = Vec::new();
    for i in [0, cursor.len() / 2, cursor.len() - 1] {
        let mut c: Vec<u8> = cursor.clone().into_bytes();
        c[i] = if c[i] == b'A' { b'B' } else { b'A' };
        bad.push((format!("altered at {i}"), String::from_utf8(c)?));
    }
    bad.push(("truncated".into(), cursor[..cursor.len() - 4].to_string()));
    bad.push(("truncated to 8".into(), cursor[..8].to_string()));
    bad.push(("extended".into(), format!("{cursor}AAAA")));
    for (name, c) in &bad {
        let (s, _, body) = api
            .get(&chat, &[("start", &start), ("end", &end), ("after", c)])
            .await?;
        assert_eq!(s, 400, "{name}: {body}");
        assert_eq!(
            conforms(&doc, CHAT, 400, &body)["error"]["code"],
            "invalid_cursor",
            "{name}"
        );
    }
    // Foreign: issued for another channel, another range, another route, or under another key.
    let other_end = iso(t0 + 60_001);
    let foreign: Vec<(&str, String, Query)> = vec![
        (
            "other channel",
            format!("/v1.0/{}/chat", B + 1),
            vec![("start", &start), ("end", &end), ("after", &cursor)],
        ),
        (
            "other end",
            chat.clone(),
            vec![("start", &start), ("end", &other_end), ("after", &cursor)],
        ),
        (
            "user route",
            format!("/v1.0/{B}/users/1000/chat"),
            vec![("start", &start), ("end", &end), ("after", &cursor)],
        ),
        (
            "streamers",
            "/v1.0/streamers".into(),
            vec![("after", &cursor)],
        ),
    ];
    for (name, path, q) in &foreign {
        let (s, _, body) = api.get(path, q).await?;
        assert_eq!(s, 400, "{name}: {body}");
        assert!(body.contains("invalid_cursor"), "{name}: {body}");
    }
    let binding = Binding {
        kind: RouteKind::Chat,
        broadcaster_id: B,
        user_id: 0,
        start_ms: t0,
        end_ms: t0 + 60_000,
        filter: 0,
    };
    let other_key = CursorCodec::new(b"another deployment's key").encode(
        &binding,
        &Position {
            bucket: t0,
            state: None,
        },
    );
    let same_key = CursorCodec::new(SECRET.as_bytes()).encode(
        &binding,
        &Position {
            bucket: t0,
            state: None,
        },
    );
    let (s, _, _) = api
        .get(
            &chat,
            &[("start", &start), ("end", &end), ("after", &other_key)],
        )
        .await?;
    assert_eq!(s, 400, "a cursor signed with another key");
    let (s, _, body) = api
        .get(
            &chat,
            &[("start", &start), ("end", &end), ("after", &same_key)],
        )
        .await?;
    assert_eq!(
        s, 200,
        "the same position signed with the configured key: {body}"
    );
    let out_of_range = CursorCodec::new(SECRET.as_bytes()).encode(
        &binding,
        &Position {
            bucket: t0 - BUCKET_MS,
            state: None,
        },
    );
    let (s, _, body) = api
        .get(
            &chat,
            &[("start", &start), ("end", &end), ("after", &out_of_range)],
        )
        .await?;
    assert_eq!(s, 400, "{body}");

    // The committed document is what is served; /healthz on the API port too; metrics by route.
    let (s, _, body) = api.get("/openapi.json", &[]).await?;
    assert_eq!(
        (s, serde_json::from_str::<Value>(&body)?),
        (200, doc.clone())
    );
    assert_eq!(api.get("/healthz", &[]).await?.2, "ok");
    let metrics = api
        .http
        .get(format!("{}/metrics", api.admin))
        .send()
        .await?
        .text()
        .await?;
    assert!(metrics.contains("tci_chat_api_http_requests_total{route=\"/v1.0/{broadcaster_id}/chat\",status=\"400\"}"), "{metrics}");
    assert!(metrics.contains(
        "tci_chat_api_http_request_duration_seconds_bucket{route=\"/v1.0/{broadcaster_id}/chat\""
    ));
    let ready = api.http.get(format!("{}/readyz", api.admin)).send().await?;
    assert_eq!(ready.status().as_u16(), 200);

    api.stop().await?;
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test]
async fn cassandra_down_is_a_503_and_bad_input_still_a_400() -> anyhow::Result<()> {
    let env = TestEnv::new("api_down");
    let mut cfg = chat_api::Config {
        common: env.cfg.clone(),
        ..Default::default()
    };
    cfg.http.addr = "127.0.0.1:0".into();
    cfg.common.admin.addr = "127.0.0.1:0".into();
    cfg.common.cassandra.nodes = vec!["127.0.0.1:1".into()]; // nothing listens there
    let api = Api::start_with(cfg).await?;
    let doc = openapi();
    let (s, headers, body) = api
        .get(
            &format!("/v1.0/{B}/chat"),
            &[
                ("start", "2024-01-10T00:00:00Z"),
                ("end", "2024-01-11T00:00:00Z"),
            ],
        )
        .await?;
    assert_eq!(s, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        conforms(&doc, CHAT, 503, &body)["error"]["code"],
        "cassandra_unavailable"
    );
    let (s, _, body) = api.get("/v1.0/streamers", &[]).await?;
    assert_eq!(
        (
            s,
            conforms(&doc, "/v1.0/streamers", 503, &body)["error"]["code"].as_str()
        ),
        (503, Some("cassandra_unavailable"))
    );
    let (s, _, _) = api
        .get(
            &format!("/v1.0/{B}/chat"),
            &[("start", "2024-01-10T00:00:00Z")],
        )
        .await?;
    assert_eq!(s, 400);
    let ready = api.http.get(format!("{}/readyz", api.admin)).send().await?;
    assert_eq!(ready.status().as_u16(), 503);
    api.stop().await?;
    Ok(())
}

#[tokio::test]
async fn hide_deleted_and_the_streamer_list() -> anyhow::Result<()> {
    let env = TestEnv::new("api_extras");
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let w = Writer::new(&env).await?;
    let t0 = bucket_of(1_706_408_359_963);
    let msgs: Vec<ChatMessage> = (0..30)
        .map(|i| message(B, i, t0 + (i as i64) * 20_000, 1000))
        .collect();
    w.write_all(&msgs).await?;
    let deleted: HashSet<&str> = [
        msgs[3].id.as_str(),
        msgs[4].id.as_str(),
        msgs[29].id.as_str(),
    ]
    .into();
    for id in &deleted {
        let m = msgs.iter().find(|m| m.id == *id).expect("present");
        w.delete(m).await?;
    }
    let api = Api::start(&env).await?;
    let doc = openapi();
    let (start, end) = (iso(t0), iso(t0 + 3_600_000));
    let path = format!("/v1.0/{B}/chat");
    let ids = |rows: &[Row]| rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>();
    let (all, _) = walk(&api, &doc, &path, CHAT, &start, &end, 4).await?;
    assert_eq!(all.len(), 30, "the archive keeps deleted messages");
    // hide_deleted, paged by 4.
    let mut visible = Vec::new();
    let mut after = String::new();
    loop {
        let (s, _, body) = api
            .get(
                &path,
                &[
                    ("start", &start),
                    ("end", &end),
                    ("limit", "4"),
                    ("hide_deleted", "true"),
                    ("after", &after),
                ],
            )
            .await?;
        assert_eq!(s, 200, "{body}");
        let v = conforms(&doc, CHAT, 200, &body);
        visible.extend(
            v["messages"]
                .as_array()
                .expect("array")
                .iter()
                .map(|m| m["message_id"].as_str().unwrap_or_default().to_string()),
        );
        match v["cursor"].as_str() {
            Some(c) => after = c.to_string(),
            None => break,
        }
    }
    let want: Vec<String> = ids(&all)
        .into_iter()
        .filter(|id| !deleted.contains(id.as_str()))
        .collect();
    assert_eq!(visible, want);

    // Streamers: two live (seen 30 s ago), three not (seen an hour ago, or never).
    let now = tci_common::now_ms();
    let ins = session
        .prepare(format!(
            "INSERT INTO {ks}.streamers (broadcaster_id, login, display_name, first_seen, last_seen_live, title, game_name, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .await?;
    let ts = |ms: i64| scylla::value::CqlTimestamp(ms);
    for (id, seen) in [
        (1_i64, Some(now - 30_000)),
        (2, Some(now - 3_600_000)),
        (3, Some(now - 10_000)),
        (4, None),
        (5, Some(now - 3_600_000)),
    ] {
        session
            .execute_unpaged(
                &ins,
                (
                    id,
                    format!("login{id}"),
                    format!("Login{id}"),
                    ts(now - 86_400_000),
                    seen.map(ts),
                    "title",
                    "Just Chatting",
                    "en",
                ),
            )
            .await?;
    }
    let mut by_filter = std::collections::BTreeMap::new();
    for live in ["", "true", "false"] {
        let mut got = Vec::new();
        let mut after = String::new();
        for _ in 0..50 {
            let mut q = vec![("limit", "1"), ("after", after.as_str())];
            if !live.is_empty() {
                q.push(("live", live));
            }
            let (s, _, body) = api.get("/v1.0/streamers", &q).await?;
            assert_eq!(s, 200, "{body}");
            let v = conforms(&doc, "/v1.0/streamers", 200, &body);
            for st in v["streamers"].as_array().expect("array") {
                got.push((
                    st["broadcaster_id"].as_i64().unwrap_or_default(),
                    st["live"].as_bool().unwrap_or_default(),
                ));
                assert_eq!(st["login"], format!("login{}", st["broadcaster_id"]));
                assert!(st["first_seen"].as_str().is_some_and(|s| s.ends_with('Z')));
            }
            match v["cursor"].as_str() {
                Some(c) => after = c.to_string(),
                None => break,
            }
        }
        got.sort();
        by_filter.insert(live, got);
    }
    assert_eq!(
        by_filter[""],
        vec![(1, true), (2, false), (3, true), (4, false), (5, false)]
    );
    assert_eq!(by_filter["true"], vec![(1, true), (3, true)]);
    assert_eq!(by_filter["false"], vec![(2, false), (4, false), (5, false)]);

    api.stop().await?;
    env.drop_keyspace(&session).await;
    Ok(())
}

/// Real Twitch lines (from the shapes of the conformance corpus: a one-word message without the
/// colon, a shared-chat line, repeated emote ids, a /me) through the listener's own record
/// builders, the ingestor's writer and the API: `format=raw` gives back exactly the lines Twitch
/// sent, `format=text` a human log, and a cursor of one format pages the other.
#[tokio::test]
async fn raw_and_text_formats_serve_the_lines_twitch_sent() -> anyhow::Result<()> {
    use chat_listener::{irc, record};
    let env = TestEnv::new("api_formats");
    let session = env.migrate().await?;
    let w = Writer::new(&env).await?;
    let b: i64 = 11148817;
    let t0: i64 = 1_727_304_317_562;
    let lines = [
        format!("@badges=staff/1;bits=1;color=#DAA520;display-name=lahoooo;emotes=;id=886028cc-9985-47b9-a273-8164c6d59a76;room-id={b};source-room-id=1025594235;source-badges=staff/1,moderator/1;tmi-sent-ts={t0};user-id=612865661;user-type=staff :lahoooo!lahoooo@lahoooo.tmi.twitch.tv PRIVMSG #pajlada Cheer1"),
        format!("@display-name=nerixyz;emotes=25:1-5/25:9-13;id=aea562cc-1adf-47de-b656-0aaa245f1030;room-id={b};tmi-sent-ts={};user-id=129546453 :nerixyz!nerixyz@nerixyz.tmi.twitch.tv PRIVMSG #pajlada :😂Kappa😂 &Kappa a  b", t0 + 1),
        format!("@display-name=Waver;id=0b1e2c3d-0000-4000-8000-000000000003;room-id=;tmi-sent-ts={};user-id=7 :waver!waver@waver.tmi.twitch.tv PRIVMSG #pajlada :\u{1}ACTION waves\u{1}", t0 + 2),
    ];
    let mut rooms = record::RoomStates::new();
    rooms.learn_room_id("pajlada", &b.to_string());
    let mut records = Vec::new();
    for l in &lines {
        let m = irc::parse(l).map_err(|e| anyhow::anyhow!("{l}: {e}"))?;
        match record::process(&m, &mut rooms, t0 + 10, &mut record::Derived::default()) {
            Ok(record::Record::Chat(c)) => records.push(Record::Chat(c)),
            other => anyhow::bail!("{l}: {other:?}"),
        }
    }
    // A row from before the raw line was kept (schema version 1): no raw line.
    let mut old = message(b, 9, t0 + 3, 8);
    old.room.name = "pajlada".into();
    old.raw_line = None;
    records.push(Record::Chat(Box::new(old)));
    w.write_records(&records).await?;

    let api = Api::start(&env).await?;
    let path = format!("/v1.0/{b}/chat");
    let (start, end) = (iso(t0 - 1000), iso(t0 + 1000));
    let q = |format: &'static str, limit: &'static str| {
        vec![
            ("start", start.clone()),
            ("end", end.clone()),
            ("format", format.to_string()),
            ("limit", limit.to_string()),
        ]
    };
    let get = |query: Vec<(&'static str, String)>| {
        let api = &api;
        let path = path.clone();
        async move {
            let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.get(&path, &pairs).await
        }
    };

    let (status, headers, body) = get(q("raw", "100")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        body,
        format!("{}\n", lines.join("\n")),
        "the exact lines, in order"
    );
    assert_eq!(
        headers["x-raw-unavailable"], "1",
        "the version-1 row has no line"
    );
    assert!(headers.get("x-cursor").is_none());

    let (status, headers, body) = get(q("text", "100")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        body,
        "[2024-09-25 22:45:17] #pajlada lahoooo: Cheer1\n\
         [2024-09-25 22:45:17] #pajlada nerixyz: 😂Kappa😂 &Kappa a  b\n\
         [2024-09-25 22:45:17] #pajlada waver: /me waves\n\
         [2024-09-25 22:45:17] #pajlada user8: message 9 héllo 🐸 \"quoted\" \\o/\n"
    );

    // JSON: both ranges of the repeated emote id under one key.
    let (_, _, body) = get(q("json", "100")).await?;
    let v: Value = serde_json::from_str(&body)?;
    let second: Value = serde_json::from_str(v["messages"][1]["message"].as_str().unwrap_or("{}"))?;
    assert_eq!(second["emotes"]["25"].as_array().map(Vec::len), Some(2));

    // Paging: one line per page, the cursor from the headers, switching format midway.
    let mut seen = Vec::new();
    let (_, headers, body) = get(q("raw", "1")).await?;
    seen.push(body);
    let mut cursor = headers["x-cursor"].to_str()?.to_string();
    for format in ["json", "raw"] {
        let mut query = q(format, "1");
        query.push(("after", cursor.clone()));
        let (status, headers, body) = get(query).await?;
        assert_eq!(status, 200, "{body}");
        if format == "json" {
            let v: Value = serde_json::from_str(&body)?;
            assert_eq!(
                v["messages"][0]["message_id"],
                "aea562cc-1adf-47de-b656-0aaa245f1030"
            );
            cursor = v["cursor"].as_str().unwrap_or_default().to_string();
        } else {
            seen.push(body);
            cursor = headers["x-cursor"].to_str()?.to_string();
        }
    }
    assert_eq!(seen, [format!("{}\n", lines[0]), format!("{}\n", lines[2])]);
    assert!(!cursor.is_empty(), "the version-1 row is still ahead");

    // A wrong format is a 400 naming the choices.
    let (status, _, body) = get(q("xml", "1")).await?;
    assert_eq!(status, 400);
    assert!(body.contains("json, ndjson, text or raw"), "{body}");

    api.stop().await?;
    env.drop_keyspace(&session).await;
    Ok(())
}
