//! One poll: walk every page of live streams (or up to `max_pages`), filter and de-duplicate,
//! and turn the result into [`LiveStream`] records. The walk is all or nothing: a page that
//! still fails after its retries fails the whole walk, and the caller publishes nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tci_schemas::LiveStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::filter::LocalFilter;
use crate::helix::{HelixClient, HelixError, HelixStream};
use crate::metrics::{Stats, METRICS};

/// The result of a complete walk.
#[derive(Debug, Default)]
pub struct Walk {
    /// Kept streams, de-duplicated by user id, in the order first seen (most viewers first).
    pub streams: Vec<HelixStream>,
    pub pages: u32,
    pub seen: usize,
    pub duplicates: usize,
    pub filtered: usize,
    pub capped: bool,
    pub rate_limit_waits: u32,
    pub rate_limit_waited: Duration,
    pub rate_limited_429: u32,
    pub retries: u32,
    pub elapsed: Duration,
}

/// A walk that failed, with what it had done so far (for the report).
#[derive(Debug, thiserror::Error)]
#[error("walk failed at page {page}: {source}")]
pub struct WalkError {
    pub page: u32,
    #[source]
    pub source: HelixError,
    pub partial: Walk,
}

/// Accumulates pages into a [`Walk`]: the local filters and the de-duplication by user id
/// (streams move between pages while we walk, as viewer counts change).
#[derive(Debug)]
pub struct Collector<'a> {
    filter: &'a LocalFilter,
    ids: HashSet<String>,
    walk: Walk,
}

impl<'a> Collector<'a> {
    pub fn new(filter: &'a LocalFilter) -> Self {
        Self {
            filter,
            ids: HashSet::new(),
            walk: Walk::default(),
        }
    }

    /// Adds one page's entries.
    pub fn add(&mut self, data: Vec<HelixStream>) {
        for s in data {
            self.walk.seen += 1;
            // De-duplicate before filtering so a stream that moved is counted once either way.
            if !self.ids.insert(s.user_id.clone()) {
                self.walk.duplicates += 1;
                METRICS.duplicates.inc();
                continue;
            }
            match self.filter.check(&s) {
                Ok(()) => self.walk.streams.push(s),
                Err(r) => {
                    self.walk.filtered += 1;
                    METRICS.filtered.with_label_values(&[r.as_str()]).inc();
                }
            }
        }
    }

    pub fn finish(self) -> Walk {
        self.walk
    }
}

/// Walks the streams list: pages until there is no cursor (or `max_pages`).
pub async fn walk(
    helix: &HelixClient,
    filter: &LocalFilter,
    max_pages: u32,
    stats: &Stats,
    cancel: &CancellationToken,
) -> Result<Walk, WalkError> {
    let start = Instant::now();
    let mut c = Collector::new(filter);
    let mut cursor: Option<String> = None;
    loop {
        let page_no = c.walk.pages + 1;
        let res = helix.page(page_no, cursor.as_deref(), cancel).await;
        let (page, cost) = match res {
            Ok(v) => v,
            Err(source) => {
                let mut partial = c.finish();
                partial.elapsed = start.elapsed();
                return Err(WalkError {
                    page: page_no,
                    source,
                    partial,
                });
            }
        };
        c.walk.rate_limit_waits += cost.rate_limit_waits;
        c.walk.rate_limit_waited += cost.rate_limit_waited;
        c.walk.rate_limited_429 += cost.rate_limited_429;
        c.walk.retries += cost.retries;
        c.walk.pages = page_no;
        METRICS.pages.inc();
        Stats::inc(&stats.pages);
        let n = page.data.len();
        METRICS.streams_seen.inc_by(n as u64);
        c.add(page.data);
        debug!(page = page_no, entries = n, "streams page");
        // An empty page ends the walk even with a cursor (Helix does that at the very end).
        match page.pagination.cursor.filter(|c| !c.is_empty()) {
            Some(next) if n > 0 => {
                if max_pages > 0 && page_no >= max_pages {
                    c.walk.capped = true;
                    break;
                }
                cursor = Some(next);
            }
            _ => break,
        }
    }
    let mut w = c.finish();
    w.elapsed = start.elapsed();
    Ok(w)
}

/// Parses Helix's `started_at` (RFC 3339) into ms since the epoch.
pub fn parse_started_at(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Builds the records of a walk. Entries whose user id is not a number are skipped (counted,
/// logged): they cannot be keyed. A bad `started_at` becomes 0 (counted, logged); the channel is
/// still live.
pub fn to_records(streams: &[HelixStream], observed_at: i64, poll_id: &str) -> Vec<LiveStream> {
    let mut out = Vec::with_capacity(streams.len());
    let mut bad_ids = 0usize;
    for s in streams {
        let Ok(broadcaster_id) = s.user_id.parse::<i64>() else {
            bad_ids += 1;
            if bad_ids <= 3 {
                warn!(user_id = %s.user_id, user_login = %s.user_login, "Helix stream has a non-numeric user_id; skipped");
            }
            METRICS.errors.with_label_values(&["bad_user_id"]).inc();
            continue;
        };
        let started_at = parse_started_at(&s.started_at).unwrap_or_else(|| {
            METRICS.errors.with_label_values(&["bad_started_at"]).inc();
            warn!(broadcaster_id, started_at = %s.started_at, "Helix stream has an unparsable started_at; using 0");
            0
        });
        out.push(LiveStream {
            broadcaster_id,
            broadcaster_login: s.user_login.clone(),
            broadcaster_name: s.user_name.clone(),
            stream_id: s.id.clone(),
            game_id: s.game_id.clone(),
            game_name: s.game_name.clone(),
            title: s.title.clone(),
            viewer_count: s.viewer_count,
            language: s.language.clone(),
            started_at,
            observed_at,
            poll_id: poll_id.to_string(),
        });
    }
    out
}

/// A poll id: the poll's start (ms) and 64 random bits, e.g. `1706408359963-9f0c2a4e1b7d3c55`.
pub fn new_poll_id(observed_at: i64) -> String {
    format!("{observed_at}-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Filters;

    fn s(id: &str, login: &str, viewers: i64) -> HelixStream {
        HelixStream {
            id: format!("s{id}"),
            user_id: id.into(),
            user_login: login.into(),
            user_name: login.to_uppercase(),
            viewer_count: viewers,
            started_at: "2024-01-28T01:00:00Z".into(),
            ..HelixStream::default()
        }
    }

    #[test]
    fn streams_that_shift_between_pages_are_kept_once() {
        let f = LocalFilter::new(&Filters::default());
        let mut c = Collector::new(&f);
        c.add(vec![s("1", "a", 30), s("2", "b", 20)]);
        // "b" lost viewers and moved onto the next page too.
        c.add(vec![s("2", "b", 19), s("3", "c", 10)]);
        let w = c.finish();
        let ids: Vec<_> = w.streams.iter().map(|x| x.user_id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!((w.seen, w.duplicates, w.filtered), (4, 1, 0));
    }

    #[test]
    fn local_filters_apply_to_every_page() {
        let f = LocalFilter::new(&Filters {
            min_viewers: 15,
            deny_logins: vec!["a".into()],
            ..Filters::default()
        });
        let mut c = Collector::new(&f);
        c.add(vec![s("1", "a", 30), s("2", "b", 20)]);
        c.add(vec![s("3", "c", 10)]);
        let w = c.finish();
        assert_eq!(w.streams.len(), 1);
        assert_eq!(w.streams[0].user_login, "b");
        assert_eq!(w.filtered, 2);
    }

    #[test]
    fn records_carry_the_poll_stamp_and_skip_unkeyable_ids() {
        let mut bad = s("x12", "bad", 1);
        bad.user_id = "x12".into();
        let mut odd_time = s("7", "odd", 1);
        odd_time.started_at = "yesterday".into();
        let recs = to_records(
            &[s("24538518", "sneakylol", 5), bad, odd_time],
            1_706_408_359_963,
            "p1",
        );
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].broadcaster_id, 24_538_518);
        assert_eq!(recs[0].broadcaster_name, "SNEAKYLOL");
        assert_eq!(recs[0].started_at, 1_706_403_600_000);
        assert_eq!(recs[0].observed_at, 1_706_408_359_963);
        assert_eq!(recs[0].poll_id, "p1");
        assert_eq!(recs[1].started_at, 0);
    }

    #[test]
    fn poll_ids_are_unique_and_start_with_the_time() {
        let a = new_poll_id(5);
        assert!(a.starts_with("5-") && a.len() == 2 + 16, "{a}");
        assert_ne!(a, new_poll_id(5));
    }
}
