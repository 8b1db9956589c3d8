//! The world model: which channels are live right now.
//!
//! Channel number `k` (the k-th channel ever to go live) is derived from `(seed, k)` alone,
//! so a given seed always yields the same channels. Churn takes live channels offline and
//! brings channels `next, next+1, …` live. Helix and IRC read the same [`Snapshot`].

pub(crate) mod names;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use names::{ADJECTIVES, CJK_NAMES, GAMES, LANGUAGES, NOUNS, TAGS, TITLES};

/// One live stream, shaped like a Helix `streams` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Stream id (numeric string).
    pub id: String,
    /// Broadcaster id (numeric string); the IRC `room-id`.
    pub user_id: String,
    /// Broadcaster login (lowercase ASCII).
    pub user_login: String,
    /// Broadcaster display name (may be Japanese/Korean/…).
    pub user_name: String,
    /// Category id.
    pub game_id: String,
    /// Category name.
    pub game_name: String,
    /// Stream title.
    pub title: String,
    /// Broadcast language (ISO 639-1 or `other`).
    pub language: String,
    /// Current viewers (power-law distributed).
    pub viewer_count: u64,
    /// When the stream went live.
    pub started_at: DateTime<Utc>,
    /// Stream tags.
    pub tags: Vec<String>,
    /// Mature content flag.
    pub is_mature: bool,
}

impl Channel {
    /// This stream as a Helix `GET /helix/streams` `data[]` entry.
    pub fn to_helix_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "user_id": self.user_id,
            "user_login": self.user_login,
            "user_name": self.user_name,
            "game_id": self.game_id,
            "game_name": self.game_name,
            "type": "live",
            "title": self.title,
            "viewer_count": self.viewer_count,
            "started_at": self.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "language": self.language,
            "thumbnail_url": format!(
                "https://static-cdn.jtvnw.net/previews-ttv/live_user_{}-{{width}}x{{height}}.jpg",
                self.user_login
            ),
            "tag_ids": [],
            "tags": self.tags,
            "is_mature": self.is_mature,
        })
    }
}

/// An immutable view of the live set, sorted by viewers (desc), then broadcaster id.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every churn step.
    pub version: u64,
    /// Live streams, most viewers first.
    pub streams: Vec<Arc<Channel>>,
    by_login: HashMap<String, Arc<Channel>>,
}

impl Snapshot {
    fn new(version: u64, mut streams: Vec<Arc<Channel>>) -> Self {
        streams.sort_by(|a, b| {
            b.viewer_count
                .cmp(&a.viewer_count)
                .then_with(|| a.user_id.len().cmp(&b.user_id.len()))
                .then_with(|| a.user_id.cmp(&b.user_id))
        });
        let by_login = streams
            .iter()
            .map(|c| (c.user_login.clone(), c.clone()))
            .collect();
        Self {
            version,
            streams,
            by_login,
        }
    }

    /// The live channel with this login, if any.
    pub fn live(&self, login: &str) -> Option<&Arc<Channel>> {
        self.by_login.get(login)
    }
}

/// Shared world state.
#[derive(Debug)]
pub struct World {
    seed: u64,
    snapshot: RwLock<Arc<Snapshot>>,
    /// login -> broadcaster id of every channel that was ever live (for `room-id` of
    /// channels joined while offline).
    known: RwLock<HashMap<String, String>>,
    churn: Mutex<ChurnState>,
}

#[derive(Debug)]
struct ChurnState {
    rng: StdRng,
    next_index: u64,
    live: Vec<Arc<Channel>>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hash used to derive stable per-(seed, key) values.
pub(crate) fn hash2(a: u64, b: u64) -> u64 {
    mix(mix(a) ^ b.rotate_left(17))
}

/// Broadcaster id for a channel that was never live in this world (stable per login).
pub(crate) fn offline_room_id(login: &str) -> String {
    let h = login.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (900_000_000 + h % 99_000_000).to_string()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Builds channel number `k` of the world with this seed.
pub(crate) fn make_channel(seed: u64, k: u64, started_at: DateTime<Utc>) -> Channel {
    let mut rng = StdRng::seed_from_u64(hash2(seed, k));
    let adj = ADJECTIVES.choose(&mut rng).copied().unwrap_or("cozy");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("fox");
    let login = format!("{adj}{noun}{k}");
    let user_name = if rng.random_bool(0.15) {
        CJK_NAMES
            .choose(&mut rng)
            .copied()
            .unwrap_or("さくら")
            .to_string()
    } else {
        format!("{}{}{k}", capitalize(adj), capitalize(noun))
    };
    let (game_id, game_name) = *GAMES.choose(&mut rng).unwrap_or(&GAMES[0]);
    let total: u32 = LANGUAGES.iter().map(|l| l.1).sum();
    let mut pick = rng.random_range(0..total);
    let mut language = "en";
    for (l, w) in LANGUAGES {
        if pick < *w {
            language = l;
            break;
        }
        pick -= w;
    }
    let title = TITLES
        .choose(&mut rng)
        .copied()
        .unwrap_or("live")
        .replace("{g}", game_name);
    // Pareto(alpha≈1.16): most channels have a handful of viewers, a few have 100k+.
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let viewer_count = ((1.0 / u.powf(1.0 / 1.16)) - 1.0).min(400_000.0) as u64;
    let ntags = rng.random_range(0..4);
    let tags = TAGS
        .choose_multiple(&mut rng, ntags)
        .map(|t| t.to_string())
        .collect();
    Channel {
        id: (40_000_000_000 + k * 10 + rng.random_range(0..10)).to_string(),
        user_id: (10_000_000 + k * 100 + rng.random_range(0..100)).to_string(),
        user_login: login,
        user_name,
        game_id: game_id.into(),
        game_name: game_name.into(),
        title,
        language: language.into(),
        viewer_count,
        started_at,
        tags,
        is_mature: rng.random_bool(0.1),
    }
}

impl World {
    /// A world with `channels` live channels.
    pub fn new(seed: u64, channels: usize) -> Self {
        let now = Utc::now();
        let mut live = Vec::with_capacity(channels);
        let mut known = HashMap::with_capacity(channels);
        for k in 0..channels as u64 {
            let up_for =
                ChronoDuration::seconds((hash2(seed ^ 0x5747, k) % (12 * 3600)) as i64 + 60);
            let c = Arc::new(make_channel(seed, k, now - up_for));
            known.insert(c.user_login.clone(), c.user_id.clone());
            live.push(c);
        }
        let snapshot = Arc::new(Snapshot::new(0, live.clone()));
        Self {
            seed,
            snapshot: RwLock::new(snapshot),
            known: RwLock::new(known),
            churn: Mutex::new(ChurnState {
                rng: StdRng::seed_from_u64(hash2(seed, 0xC4_0123)),
                next_index: channels as u64,
                live,
            }),
        }
    }

    /// The current live set.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Broadcaster id for `login`, live or not (stable for unknown logins too).
    pub fn room_id(&self, login: &str) -> String {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(login)
            .cloned()
            .unwrap_or_else(|| offline_room_id(login))
    }

    /// One churn step: `fraction` of the live channels go offline and as many new channels
    /// come live. Returns `(went_offline, came_live)` logins.
    pub fn churn(&self, fraction: f64) -> (Vec<String>, Vec<String>) {
        let mut st = self.churn.lock().unwrap_or_else(|e| e.into_inner());
        let n = st.live.len();
        let k = ((n as f64) * fraction).round() as usize;
        let k = k.min(n);
        if k == 0 {
            return (Vec::new(), Vec::new());
        }
        let mut offline = Vec::with_capacity(k);
        for _ in 0..k {
            let len = st.live.len();
            let i = st.rng.random_range(0..len);
            offline.push(st.live.swap_remove(i).user_login.clone());
        }
        let now = Utc::now();
        let mut online = Vec::with_capacity(k);
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        for _ in 0..k {
            let idx = st.next_index;
            st.next_index += 1;
            let c = Arc::new(make_channel(self.seed, idx, now));
            known.insert(c.user_login.clone(), c.user_id.clone());
            online.push(c.user_login.clone());
            st.live.push(c);
        }
        drop(known);
        let version = self.snapshot().version + 1;
        let snap = Arc::new(Snapshot::new(version, st.live.clone()));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap;
        (offline, online)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_unique() {
        let a = World::new(7, 2000);
        let b = World::new(7, 2000);
        let (sa, sb) = (a.snapshot(), b.snapshot());
        let ids_a: Vec<_> = sa.streams.iter().map(|c| c.user_id.clone()).collect();
        let ids_b: Vec<_> = sb.streams.iter().map(|c| c.user_id.clone()).collect();
        assert_eq!(ids_a, ids_b);
        let uniq: std::collections::HashSet<_> = ids_a.iter().collect();
        assert_eq!(uniq.len(), 2000);
        let logins: std::collections::HashSet<_> =
            sa.streams.iter().map(|c| c.user_login.clone()).collect();
        assert_eq!(logins.len(), 2000);
        assert!(sa
            .streams
            .iter()
            .all(|c| c.user_login.is_ascii() && c.user_login.len() <= 25));
        assert!(sa.streams.iter().any(|c| !c.user_name.is_ascii()));
        assert!(sa
            .streams
            .windows(2)
            .all(|w| w[0].viewer_count >= w[1].viewer_count));
        // power law: the top channel dwarfs the median
        let median = sa.streams[1000].viewer_count;
        assert!(sa.streams[0].viewer_count > 100 * (median + 1));
    }

    #[test]
    fn churn_keeps_size_and_replaces_channels() {
        let w = World::new(1, 100);
        let (off, on) = w.churn(0.1);
        assert_eq!((off.len(), on.len()), (10, 10));
        let s = w.snapshot();
        assert_eq!(s.streams.len(), 100);
        assert_eq!(s.version, 1);
        assert!(off.iter().all(|l| s.live(l).is_none()));
        assert!(on.iter().all(|l| s.live(l).is_some()));
        assert_eq!(w.room_id(&off[0]).len(), 8);
    }
}
