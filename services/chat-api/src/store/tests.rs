//! The bucket walk against an in-memory source that pages like Cassandra: short pages (as
//! ScyllaDB returns under memory pressure), a paging state after an exactly full last page, many
//! rows in one millisecond, buckets with no row in range.

use chat_store::bucket_of;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::atomic::{AtomicU32, Ordering},
};

use chat_store::BUCKET_MS;
use futures::executor::block_on;
use proptest::prelude::*;

use super::*;

const T0: i64 = 1_706_400_000_000; // a bucket boundary

#[derive(Default)]
struct Fake {
    buckets: BTreeMap<i64, Vec<ChatRow>>,
    deleted: HashMap<i64, HashSet<String>>,
    /// Most rows per page (0 = only the page size limits).
    short: usize,
    /// Report "no more pages" with a full last page (ScyllaDB/Cassandra may do either).
    exact_end: bool,
    page_calls: AtomicU32,
}

impl Fake {
    fn with(rows: Vec<ChatRow>) -> Self {
        Self::keyed(rows, bucket_of)
    }

    /// Rows in the buckets of `key` (a chatter's days: `chat_store::day_of`).
    fn keyed(rows: Vec<ChatRow>, key: fn(i64) -> i64) -> Self {
        let mut f = Self::default();
        for r in rows {
            f.buckets.entry(key(r.sent_ts)).or_default().push(r);
        }
        for v in f.buckets.values_mut() {
            v.sort_by(|a, b| (a.sent_ts, &a.message_id).cmp(&(b.sent_ts, &b.message_id)));
        }
        f
    }
}

impl ChatSource for Fake {
    async fn buckets(
        &self,
        _: Scope,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .buckets
            .range(from..=to)
            .map(|(b, _)| *b)
            .take(limit as usize)
            .collect())
    }

    async fn page(
        &self,
        _: Scope,
        _: Body,
        bucket: i64,
        (start, end): (i64, i64),
        page_size: usize,
        state: Option<&[u8]>,
    ) -> Result<SourcePage<ChatRow>, StoreError> {
        self.page_calls.fetch_add(1, Ordering::Relaxed);
        assert!(
            page_size >= 1,
            "page size must never be 0 (Cassandra reads that as unpaged)"
        );
        let rows: Vec<&ChatRow> = self
            .buckets
            .get(&bucket)
            .map(|v| {
                v.iter()
                    .filter(|r| r.sent_ts >= start && r.sent_ts <= end)
                    .collect()
            })
            .unwrap_or_default();
        let offset = state
            .map(|s| u64::from_be_bytes(s.try_into().expect("8-byte state")) as usize)
            .unwrap_or(0);
        let n = if self.short > 0 {
            page_size.min(self.short)
        } else {
            page_size
        };
        let end_at = (offset + n).min(rows.len());
        let page: Vec<ChatRow> = rows[offset.min(end_at)..end_at]
            .iter()
            .map(|r| (*r).clone())
            .collect();
        // Like Cassandra: a page cut by the page size carries a state even when nothing follows.
        let more = (end_at < rows.len() || (page.len() == page_size && !self.exact_end))
            .then(|| (end_at as u64).to_be_bytes().to_vec());
        Ok((page, more))
    }

    async fn deleted(&self, _: i64, bucket: i64) -> Result<HashSet<String>, StoreError> {
        Ok(self.deleted.get(&bucket).cloned().unwrap_or_default())
    }
}

fn row(ts: i64, id: &str) -> ChatRow {
    ChatRow {
        sent_ts: ts,
        message_id: id.to_string(),
        message: format!("{{\"id\": \"{id}\"}}"),
        user_id: None,
    }
}

fn request(start: i64, end: i64, limit: usize) -> ChatRequest {
    ChatRequest {
        body: Body::Message,
        scope: Scope::Channel { broadcaster_id: 1 },
        start_ms: start,
        end_ms: end,
        limit,
        resume: None,
        hide_deleted: false,
        max_queries: 32,
        index_batch: 64,
    }
}

/// Follows cursors to the end; returns every row and the per-call query counts.
fn walk(src: &Fake, mut req: ChatRequest) -> (Vec<ChatRow>, Vec<u32>) {
    let mut all = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..100_000 {
        let page = block_on(read_chat(src, &req)).expect("fake never fails");
        assert!(page.rows.len() <= req.limit);
        calls.push(page.queries);
        all.extend(page.rows);
        match page.next {
            Some(p) => req.resume = Some(p),
            None => return (all, calls),
        }
    }
    panic!("walk did not end");
}

fn expected(src: &Fake, start: i64, end: i64) -> Vec<ChatRow> {
    src.buckets
        .values()
        .flatten()
        .filter(|r| r.sent_ts >= start && r.sent_ts <= end)
        .cloned()
        .collect()
}

#[test]
fn five_hundred_rows_in_one_millisecond_across_a_bucket_edge() {
    let edge = T0 + BUCKET_MS;
    let mut rows: Vec<ChatRow> = (0..500)
        .map(|i| row(edge - 1, &format!("a{i:04}")))
        .collect();
    rows.extend((0..500).map(|i| row(edge, &format!("b{i:04}"))));
    let src = Fake::with(rows);
    for limit in [1, 2, 7, 100] {
        let (got, _) = walk(&src, request(T0, edge + 10, limit));
        assert_eq!(got, expected(&src, T0, edge + 10), "limit {limit}");
    }
}

#[test]
fn empty_buckets_are_skipped() {
    // 30 days, two hours of chat in the middle.
    let start = T0;
    let end = T0 + 30 * 24 * 3600 * 1000;
    let chat_at = T0 + 10 * 24 * 3600 * 1000;
    let rows: Vec<ChatRow> = (0..24)
        .map(|i| row(chat_at + i * BUCKET_MS, &format!("m{i}")))
        .collect();
    let src = Fake::with(rows);
    let page = block_on(read_chat(&src, &request(start, end, 100))).expect("ok");
    assert_eq!(page.rows.len(), 24);
    assert!(page.next.is_none());
    // The start bucket (empty), then the 24 non-empty ones; one index read.
    assert_eq!(page.queries, 25);
    assert_eq!(page.index_reads, 1);
}

#[test]
fn the_query_cap_returns_a_cursor_at_the_next_bucket() {
    let rows: Vec<ChatRow> = (0..10)
        .map(|i| row(T0 + i * BUCKET_MS, &format!("m{i}")))
        .collect();
    let src = Fake::with(rows);
    let mut req = request(T0, T0 + 20 * BUCKET_MS, 100);
    req.max_queries = 3;
    let page = block_on(read_chat(&src, &req)).expect("ok");
    assert_eq!(page.rows.len(), 3);
    assert_eq!(page.queries, 3);
    assert_eq!(
        page.next,
        Some(Position {
            bucket: T0 + 3 * BUCKET_MS,
            state: None
        })
    );
    let (all, calls) = walk(&src, req);
    assert_eq!(all.len(), 10);
    assert!(calls.iter().all(|q| *q <= 3), "{calls:?}");
}

#[test]
fn no_cursor_when_the_range_is_exhausted_exactly() {
    let src = Fake::with((0..4).map(|i| row(T0 + i, &format!("m{i}"))).collect());
    let first = block_on(read_chat(&src, &request(T0, T0 + 10, 2))).expect("ok");
    assert!(first.next.is_some());
    // 4 rows, limit 4: the fake (like Cassandra) hands back a state after the full page, so
    // one more (empty) call may follow; it must end the walk with no cursor.
    let (all, _) = walk(&src, request(T0, T0 + 10, 4));
    assert_eq!(all.len(), 4);
    let last = block_on(read_chat(
        &src,
        &ChatRequest {
            body: Body::Message,
            resume: first.next,
            ..request(T0, T0 + 10, 2)
        },
    ))
    .expect("ok");
    assert_eq!(last.rows.len(), 2);
}

#[test]
fn hide_deleted_leaves_out_deleted_ids_only() {
    let mut src = Fake::with(
        (0..20)
            .map(|i| row(T0 + i * 1000, &format!("m{i:02}")))
            .collect(),
    );
    src.deleted.insert(
        T0,
        ["m03", "m04", "m17", "not-in-range"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let mut req = request(T0, T0 + 100_000, 3);
    req.hide_deleted = true;
    let (got, _) = walk(&src, req);
    let ids: Vec<&str> = got.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(ids.len(), 17);
    assert!(!ids.contains(&"m03") && !ids.contains(&"m04") && !ids.contains(&"m17"));
    // Without the flag the archive shows everything.
    assert_eq!(walk(&src, request(T0, T0 + 100_000, 3)).0.len(), 20);
}

/// A chatter's log pages by day, and a day spans many 5-minute chat buckets: each row is checked
/// against the deletion marks of its own chat bucket.
#[test]
fn hide_deleted_in_a_user_log_reads_the_marks_of_each_rows_chat_bucket() {
    // 12 messages, one every 2 minutes: six 5-minute buckets of one day.
    let mut src = Fake::keyed(
        (0..12)
            .map(|i| row(T0 + i * 120_000, &format!("m{i:02}")))
            .collect(),
        chat_store::day_of,
    );
    for (bucket_no, id) in [(0, "m01"), (2, "m05"), (4, "m11")] {
        src.deleted.insert(
            T0 + bucket_no * chat_store::BUCKET_MS,
            [id.to_string()].into(),
        );
    }
    let mut req = request(T0, T0 + 3_600_000, 5);
    req.scope = Scope::User {
        broadcaster_id: 1,
        user_id: 9,
    };
    req.hide_deleted = true;
    let (got, _) = walk(&src, req);
    let ids: Vec<&str> = got.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(
        ids,
        ["m00", "m02", "m03", "m04", "m06", "m07", "m08", "m09", "m10"]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn pages_never_skip_and_never_repeat(
        msgs in proptest::collection::vec((0i64..12, 0i64..4), 0..300),
        limit in 1usize..12,
        short in 0usize..5,
        exact_end in any::<bool>(),
        max_queries in 1u32..5,
        index_batch in 1u32..4,
        (s, e) in (0i64..12, 0i64..12).prop_map(|(a, b)| (a.min(b), a.max(b))),
    ) {
        // Timestamps on few distinct values (lots of ties), spread over 12 buckets, some right
        // at the edges.
        let ts_of = |slot: i64, k: i64| T0 + slot * BUCKET_MS + [0, 1, BUCKET_MS / 2, BUCKET_MS - 1][k as usize];
        let rows: Vec<ChatRow> = msgs.iter().enumerate().map(|(i, (slot, k))| row(ts_of(*slot, *k), &format!("id{i:05}"))).collect();
        let mut src = Fake::with(rows);
        src.short = short;
        src.exact_end = exact_end;
        let (start, end) = (ts_of(s, 1), ts_of(e, 2));
        let mut req = request(start, end, limit);
        req.max_queries = max_queries;
        req.index_batch = index_batch;
        let (got, calls) = walk(&src, req);
        prop_assert_eq!(&got, &expected(&src, start, end));
        prop_assert!(calls.iter().all(|q| *q <= max_queries));
        let unique: HashSet<&str> = got.iter().map(|r| r.message_id.as_str()).collect();
        prop_assert_eq!(unique.len(), got.len());
    }
}

struct FakeStreamers(Vec<StreamerRow>);

impl StreamerSource for FakeStreamers {
    async fn streamers(
        &self,
        page_size: usize,
        state: Option<&[u8]>,
    ) -> Result<SourcePage<StreamerRow>, StoreError> {
        let offset = state
            .map(|s| u64::from_be_bytes(s.try_into().expect("8")) as usize)
            .unwrap_or(0);
        let end = (offset + page_size).min(self.0.len());
        let more = (end < self.0.len()).then(|| (end as u64).to_be_bytes().to_vec());
        Ok((self.0[offset..end].to_vec(), more))
    }
}

#[test]
fn streamer_filter_pages_exactly_with_a_bounded_scan() {
    let all: Vec<StreamerRow> = (0..50)
        .map(|i| StreamerRow {
            broadcaster_id: i,
            login: Some(format!("s{i}")),
            display_name: None,
            first_seen: Some(0),
            last_seen_live: Some(if i % 7 == 0 { 100 } else { 0 }),
            title: None,
            game_name: None,
            language: None,
        })
        .collect();
    let src = FakeStreamers(all);
    let live = |r: &StreamerRow| r.last_seen_live == Some(100);
    let mut got = Vec::new();
    let mut state = None;
    loop {
        let p = block_on(read_streamers(&src, 2, state, live, 4)).expect("ok");
        assert!(p.queries <= 4);
        got.extend(p.rows.iter().map(|r| r.broadcaster_id));
        match p.next {
            Some(s) => state = Some(s),
            None => break,
        }
    }
    assert_eq!(got, vec![0, 7, 14, 21, 28, 35, 42, 49]);
}
