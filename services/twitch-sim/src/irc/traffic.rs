//! The chat generator: a ticker that emits a batch of lines per tick for joined live
//! channels (no task per message), at an aggregate rate.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::hub::{OutLine, RoomField};
use super::privmsg::{colon_optional, tag, Badges, Privmsg, Rendered, Reply, Word};
use crate::sent::{format_uuid, SentRef};
use crate::world::names::{ADJECTIVES, CJK_NAMES, COLORS, GLOBAL_EMOTES, NOUNS, WORDS};
use crate::world::{hash2, Channel};
use crate::Shared;

const USER_POOL: usize = 20_000;
const RECENT: usize = 64;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A chatter in the simulated user pool.
#[derive(Debug)]
pub(crate) struct User {
    pub id: String,
    pub login: String,
    pub display: String,
    pub color: &'static str,
}

#[derive(Debug, Clone)]
struct Recent {
    id: u128,
    user: usize,
    body: String,
    /// Thread root: (msg id, user index).
    thread: Option<(u128, usize)>,
}

#[derive(Debug)]
struct ChanGen {
    recent: VecDeque<Recent>,
    emotes: Vec<(String, String)>,
    base: usize,
}

#[derive(Debug)]
struct Active {
    chan: Arc<Channel>,
    login: Arc<str>,
    room_id: Arc<str>,
}

/// Generates realistic Twitch chat lines.
#[derive(Debug)]
pub(crate) struct Generator {
    rng: StdRng,
    seed: u64,
    users: Vec<User>,
    chans: HashMap<Arc<str>, ChanGen>,
    active: Vec<Active>,
    cumulative: Vec<f64>,
    dup_p: f64,
}

fn make_users(seed: u64) -> Vec<User> {
    (0..USER_POOL)
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(hash2(seed ^ 0x0115_E125, i as u64));
            let adj = ADJECTIVES.choose(&mut rng).copied().unwrap_or("x");
            let noun = NOUNS.choose(&mut rng).copied().unwrap_or("y");
            let login = format!("{noun}_{adj}{i}");
            let display = if rng.random_bool(0.08) {
                CJK_NAMES
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or("x")
                    .to_string()
            } else if rng.random_bool(0.5) {
                let mut c = login.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            } else {
                login.clone()
            };
            let color = if rng.random_bool(0.1) {
                ""
            } else {
                COLORS.choose(&mut rng).copied().unwrap_or("")
            };
            User {
                id: (100_000_000 + i as u64 * 37 + rng.random_range(0..37)).to_string(),
                login,
                display,
                color,
            }
        })
        .collect()
}

fn random_uuid(rng: &mut StdRng) -> u128 {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .as_u128()
}

/// A channel's generator state, created on first use.
fn chan_state<'a>(
    chans: &'a mut HashMap<Arc<str>, ChanGen>,
    seed: u64,
    a: &Active,
) -> &'a mut ChanGen {
    chans.entry(a.login.clone()).or_insert_with(|| {
        let h = hash2(seed, a.chan.user_id.parse().unwrap_or(0));
        let prefix: String = a
            .login
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .take(5)
            .collect();
        let emotes = ["Hype", "Love", "GG", "Wave", "Sad"]
            .iter()
            .enumerate()
            .map(|(j, s)| {
                (
                    format!(
                        "emotesv2_{:016x}{:016x}",
                        hash2(h, j as u64),
                        hash2(h, 99 + j as u64)
                    ),
                    format!("{prefix}{s}"),
                )
            })
            .collect();
        ChanGen {
            recent: VecDeque::with_capacity(RECENT),
            emotes,
            base: (h % USER_POOL as u64) as usize,
        }
    })
}

impl Generator {
    pub(crate) fn new(seed: u64, dup_p: f64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(hash2(seed, 0x7AFF1C)),
            seed,
            users: make_users(seed),
            chans: HashMap::new(),
            active: Vec::new(),
            cumulative: Vec::new(),
            dup_p,
        }
    }

    /// Rebuilds the weighted list of channels that chat: those both joined and live, or with
    /// `all_live`, every live channel (Twitch chats whether or not anyone listens).
    pub(crate) fn set_active(
        &mut self,
        joined: &[Arc<str>],
        snap: &crate::world::Snapshot,
        all_live: bool,
    ) {
        self.active.clear();
        self.cumulative.clear();
        let mut total = 0.0;
        let every_live: Vec<Arc<str>>;
        let joined = if all_live {
            every_live = snap
                .streams
                .iter()
                .map(|c| Arc::from(c.user_login.as_str()))
                .collect();
            &every_live[..]
        } else {
            joined
        };
        for login in joined {
            if let Some(c) = snap.live(login) {
                total += ((c.viewer_count + 1) as f64).powf(0.6);
                self.cumulative.push(total);
                self.active.push(Active {
                    chan: c.clone(),
                    login: login.clone(),
                    room_id: Arc::from(c.user_id.as_str()),
                });
            }
        }
        let keep: std::collections::HashSet<&Arc<str>> =
            self.active.iter().map(|a| &a.login).collect();
        self.chans.retain(|k, _| keep.contains(k));
    }

    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Generates `n` events (plus any duplicate deliveries) stamped `ts`.
    pub(crate) fn generate(&mut self, n: usize, ts: u64, out: &mut Vec<OutLine>) {
        let Some(&total) = self.cumulative.last() else {
            return;
        };
        for _ in 0..n {
            let x = self.rng.random_range(0.0..total);
            let i = self
                .cumulative
                .partition_point(|c| *c <= x)
                .min(self.active.len() - 1);
            let roll: f64 = self.rng.random();
            if roll < 0.004 {
                self.usernotice(i, ts, out);
            } else if roll < 0.006 {
                self.clearchat(i, ts, out);
            } else if roll < 0.009 {
                self.clearmsg(i, ts, out);
            } else if roll < 0.010 {
                self.roomstate(i, out);
            } else {
                self.privmsg(i, ts, out);
            }
        }
    }

    fn chan_state(&mut self, i: usize) -> &mut ChanGen {
        chan_state(&mut self.chans, self.seed, &self.active[i])
    }

    fn pick_user(&mut self, i: usize) -> usize {
        let base = self.chan_state(i).base;
        let u: f64 = self.rng.random();
        (base + (USER_POOL as f64 * u * u * u) as usize) % USER_POOL
    }

    /// Makes every random decision for a PRIVMSG by user `uidx` in a channel (`st`, broadcaster
    /// id `chan_id`); [`Privmsg::render`] turns the result into the line.
    fn decide_privmsg<'a>(
        rng: &mut StdRng,
        st: &'a ChanGen,
        uidx: usize,
        chan_id: u64,
        dup_p: f64,
    ) -> Privmsg<'a> {
        let id = random_uuid(rng);
        let reply = if rng.random::<f64>() < 0.08 && !st.recent.is_empty() {
            let p = &st.recent[rng.random_range(0..st.recent.len())];
            Some(Reply {
                id: p.id,
                user: p.user,
                body: &p.body,
                thread: p.thread.unwrap_or((p.id, p.user)),
            })
        } else {
            None
        };
        let is_action = rng.random_bool(0.03);
        let bits = if rng.random_bool(0.015) {
            *[1u32, 100, 500, 1000].choose(rng).unwrap_or(&100)
        } else {
            0
        };
        let n = rng.random_range(1..=12);
        let words: Vec<Word<'a>> = (0..n)
            .map(|_| {
                let r: f64 = rng.random();
                if r < 0.10 {
                    let (e, c) = GLOBAL_EMOTES.choose(rng).unwrap_or(&GLOBAL_EMOTES[0]);
                    Word {
                        text: c,
                        emote: Some(e),
                    }
                } else if r < 0.16 {
                    let (e, c) = st.emotes.choose(rng).unwrap_or(&st.emotes[0]);
                    Word {
                        text: c,
                        emote: Some(e),
                    }
                } else {
                    Word {
                        text: WORDS.choose(rng).copied().unwrap_or("lol"),
                        emote: None,
                    }
                }
            })
            .collect();
        // Badges are stable per (user, channel).
        let h = hash2(uidx as u64, chan_id);
        let moderator = h % 50 == 7;
        let badges = Badges {
            sub_months: h.is_multiple_of(4).then_some(1 + (h >> 8) % 60),
            moderator,
            vip: !moderator && h % 40 == 1,
            premium: (h >> 16).is_multiple_of(10),
            turbo: (h >> 20).is_multiple_of(50),
        };
        let nonce: u128 = rng.random();
        let split_emote_repeats = rng.random_bool(0.3);
        let first_msg = rng.random_bool(0.01);
        // The text is one word only without a mention, a cheer or an ACTION wrapper.
        let one_word = match (&reply, bits, is_action, &words[..]) {
            (None, 0, false, [w]) => colon_optional(w.text),
            _ => false,
        };
        let omit_colon = one_word && rng.random_bool(0.5);
        let duplicate = rng.random_bool(dup_p);
        Privmsg {
            user: uidx,
            id,
            reply,
            is_action,
            bits,
            words,
            badges,
            nonce,
            split_emote_repeats,
            first_msg,
            returning_chatter: !first_msg && h % 97 == 3,
            omit_colon,
            duplicate,
        }
    }

    fn privmsg(&mut self, i: usize, ts: u64, out: &mut Vec<OutLine>) {
        let uidx = self.pick_user(i);
        let a = &self.active[i];
        let st = chan_state(&mut self.chans, self.seed, a);
        let chan_id = a.chan.user_id.parse().unwrap_or(0);
        let msg = Self::decide_privmsg(&mut self.rng, st, uidx, chan_id, self.dup_p);
        let Rendered { line, body } = msg.render(&self.users, &a.login, &a.room_id, ts);
        let (id, duplicate) = (msg.id, msg.duplicate);
        let thread = msg.reply.as_ref().map(|r| r.thread);
        let sent = |duplicate| {
            Some(SentRef {
                room_id: a.room_id.clone(),
                id,
                duplicate,
            })
        };
        if duplicate {
            out.push(OutLine {
                login: a.login.clone(),
                text: line.clone(),
                sent: sent(false),
                room_update: None,
            });
        }
        out.push(OutLine {
            login: a.login.clone(),
            text: line,
            sent: sent(duplicate),
            room_update: None,
        });
        if st.recent.len() == RECENT {
            st.recent.pop_front();
        }
        st.recent.push_back(Recent {
            id,
            user: uidx,
            body,
            thread,
        });
    }

    fn usernotice(&mut self, i: usize, ts: u64, out: &mut Vec<OutLine>) {
        let uidx = self.pick_user(i);
        let id = random_uuid(&mut self.rng);
        let kind = self.rng.random_range(0..3);
        let months = self.rng.random_range(2..40u32);
        let viewers = self.rng.random_range(2..5000u32);
        let raider = self.rng.random_range(0..USER_POOL);
        let a = &self.active[i];
        let u = &self.users[uidx];
        let mut t = String::with_capacity(640);
        t.push('@');
        tag(
            &mut t,
            "badge-info",
            if kind == 1 { "subscriber/1" } else { "" },
        );
        tag(
            &mut t,
            "badges",
            if kind == 1 { "subscriber/0" } else { "" },
        );
        tag(&mut t, "color", u.color);
        let (login, display, user_id) = if kind == 2 {
            let r = &self.users[raider];
            (&r.login, &r.display, &r.id)
        } else {
            (&u.login, &u.display, &u.id)
        };
        tag(&mut t, "display-name", display);
        tag(&mut t, "emotes", "");
        tag(&mut t, "flags", "");
        tag(&mut t, "id", &format_uuid(id));
        tag(&mut t, "login", login);
        tag(&mut t, "mod", "0");
        let trailing = match kind {
            0 => {
                tag(&mut t, "msg-id", "sub");
                tag(&mut t, "msg-param-cumulative-months", "1");
                tag(&mut t, "msg-param-months", "0");
                tag(&mut t, "msg-param-should-share-streak", "0");
                tag(&mut t, "msg-param-sub-plan", "1000");
                tag(
                    &mut t,
                    "msg-param-sub-plan-name",
                    &format!("Channel Subscription ({})", a.login),
                );
                tag(&mut t, "room-id", &a.room_id);
                tag(&mut t, "subscriber", "1");
                tag(
                    &mut t,
                    "system-msg",
                    &format!("{display} subscribed at Tier 1."),
                );
                String::new()
            }
            1 => {
                tag(&mut t, "msg-id", "resub");
                tag(&mut t, "msg-param-cumulative-months", &months.to_string());
                tag(&mut t, "msg-param-months", "0");
                tag(&mut t, "msg-param-should-share-streak", "1");
                tag(&mut t, "msg-param-streak-months", &(months / 2).to_string());
                tag(&mut t, "msg-param-sub-plan", "Prime");
                tag(&mut t, "msg-param-sub-plan-name", "Prime");
                tag(&mut t, "room-id", &a.room_id);
                tag(&mut t, "subscriber", "1");
                tag(
                    &mut t,
                    "system-msg",
                    &format!(
                        "{display} subscribed with Prime. They've subscribed for {months} months!"
                    ),
                );
                format!(" :{months} months already PogChamp")
            }
            _ => {
                tag(&mut t, "msg-id", "raid");
                tag(&mut t, "msg-param-displayName", display);
                tag(&mut t, "msg-param-login", login);
                tag(
                    &mut t,
                    "msg-param-profileImageURL",
                    "https://static-cdn.jtvnw.net/jtv_user_pictures/sim-profile_image-70x70.png",
                );
                tag(&mut t, "msg-param-viewerCount", &viewers.to_string());
                tag(&mut t, "room-id", &a.room_id);
                tag(&mut t, "subscriber", "0");
                tag(
                    &mut t,
                    "system-msg",
                    &format!("{viewers} raiders from {display} have joined!"),
                );
                String::new()
            }
        };
        tag(&mut t, "tmi-sent-ts", &ts.to_string());
        tag(&mut t, "user-id", user_id);
        tag(&mut t, "user-type", "");
        t.pop();
        let _ = write!(t, " :tmi.twitch.tv USERNOTICE #{}{trailing}\r\n", a.login);
        out.push(OutLine {
            login: a.login.clone(),
            text: t,
            sent: None,
            room_update: None,
        });
    }

    fn clearchat(&mut self, i: usize, ts: u64, out: &mut Vec<OutLine>) {
        let uidx = self.pick_user(i);
        let kind = self.rng.random_range(0..20);
        let dur = *[1u32, 10, 60, 600, 86400]
            .choose(&mut self.rng)
            .unwrap_or(&600);
        let a = &self.active[i];
        let u = &self.users[uidx];
        let text = match kind {
            0 => format!("@room-id={};tmi-sent-ts={ts} :tmi.twitch.tv CLEARCHAT #{}\r\n", a.room_id, a.login),
            // A permanent ban; the login is a last parameter without spaces, sent without ':'.
            1..=5 => format!(
                "@room-id={};target-user-id={};tmi-sent-ts={ts} :tmi.twitch.tv CLEARCHAT #{} {}\r\n",
                a.room_id, u.id, a.login, u.login
            ),
            _ => format!(
                "@ban-duration={dur};room-id={};target-user-id={};tmi-sent-ts={ts} :tmi.twitch.tv CLEARCHAT #{} :{}\r\n",
                a.room_id, u.id, a.login, u.login
            ),
        };
        out.push(OutLine {
            login: a.login.clone(),
            text,
            sent: None,
            room_update: None,
        });
    }

    fn clearmsg(&mut self, i: usize, ts: u64, out: &mut Vec<OutLine>) {
        let len = self.chan_state(i).recent.len();
        if len == 0 {
            return self.privmsg(i, ts, out);
        }
        let k = self.rng.random_range(0..len);
        let Some(r) = self.chan_state(i).recent.get(k).cloned() else {
            return;
        };
        let a = &self.active[i];
        let u = &self.users[r.user];
        let mut t = String::from("@");
        tag(&mut t, "login", &u.login);
        // Twitch's own documented CLEARMSG has `room-id=` (empty).
        let room_id = if self.rng.random_bool(0.25) {
            ""
        } else {
            &a.room_id
        };
        tag(&mut t, "room-id", room_id);
        tag(&mut t, "target-msg-id", &format_uuid(r.id));
        tag(&mut t, "tmi-sent-ts", &ts.to_string());
        t.pop();
        let _ = write!(t, " :tmi.twitch.tv CLEARMSG #{} :{}\r\n", a.login, r.body);
        out.push(OutLine {
            login: a.login.clone(),
            text: t,
            sent: None,
            room_update: None,
        });
    }

    fn roomstate(&mut self, i: usize, out: &mut Vec<OutLine>) {
        let (field, value) = match self.rng.random_range(0..5) {
            0 => (
                RoomField::Slow,
                *[0i64, 3, 30, 120].choose(&mut self.rng).unwrap_or(&0),
            ),
            1 => (
                RoomField::FollowersOnly,
                *[-1i64, 0, 10, 60].choose(&mut self.rng).unwrap_or(&-1),
            ),
            2 => (RoomField::EmoteOnly, self.rng.random_range(0..2)),
            3 => (RoomField::SubsOnly, self.rng.random_range(0..2)),
            _ => (RoomField::R9k, self.rng.random_range(0..2)),
        };
        let a = &self.active[i];
        let text = format!(
            "@{}={value};room-id={} :tmi.twitch.tv ROOMSTATE #{}\r\n",
            field.tag(),
            a.room_id,
            a.login
        );
        out.push(OutLine {
            login: a.login.clone(),
            text,
            sent: None,
            room_update: Some((field, value)),
        });
    }
}

/// Runs the generator until `token` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, token: CancellationToken) -> anyhow::Result<()> {
    let cfg = &shared.cfg;
    let mut generator = Generator::new(cfg.seed, cfg.duplicate_probability);
    let mut ticker = tokio::time::interval(cfg.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut budget = 0.0f64;
    let mut seen = (u64::MAX, u64::MAX);
    let mut buf = Vec::new();
    info!(rate = shared.rate(), tick = ?cfg.tick, "traffic generator started");
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last).min(Duration::from_secs(1));
        last = now;
        let versions = (shared.hub.version(), shared.world.snapshot().version);
        if versions != seen {
            seen = versions;
            let snap = shared.world.snapshot();
            generator.set_active(&shared.hub.joined(), &snap, cfg.chat_while_unjoined);
            debug!(active = generator.active_len(), "active channels changed");
        }
        if shared.is_paused() || generator.active_len() == 0 {
            budget = 0.0;
            continue;
        }
        budget += shared.rate() * elapsed.as_secs_f64();
        let n = budget.floor();
        budget -= n;
        if n < 1.0 {
            continue;
        }
        let ts = now_ms();
        generator.generate(n as usize, ts, &mut buf);
        let privmsgs = buf
            .iter()
            .filter(|l| l.sent.as_ref().is_some_and(|s| !s.duplicate))
            .count();
        shared.count_generated(buf.len() as u64, privmsgs as u64);
        shared.sent.generated(
            buf.iter()
                .filter_map(|l| l.sent.as_ref())
                .filter(|s| !s.duplicate)
                .map(|s| (s.room_id.clone(), s.id)),
            ts,
        );
        shared
            .hub
            .distribute(std::mem::take(&mut buf), cfg.max_lines_per_frame);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irc::proto::{parse, tag as get_tag};
    use crate::world::World;

    fn gen_lines(n: usize) -> Vec<OutLine> {
        let world = World::new(3, 50);
        let snap = world.snapshot();
        let joined: Vec<Arc<str>> = snap
            .streams
            .iter()
            .map(|c| Arc::from(c.user_login.as_str()))
            .collect();
        let mut g = Generator::new(3, 0.01);
        g.set_active(&joined, &snap, false);
        let mut out = Vec::new();
        g.generate(n, 1_700_000_000_000, &mut out);
        out
    }

    fn unescape(v: &str) -> String {
        let mut s = String::new();
        let mut it = v.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('s') => s.push(' '),
                    Some(':') => s.push(';'),
                    Some('\\') => s.push('\\'),
                    Some('r') => s.push('\r'),
                    Some('n') => s.push('\n'),
                    Some(o) => s.push(o),
                    None => {}
                }
            } else {
                s.push(c);
            }
        }
        s
    }

    #[test]
    fn emote_positions_are_code_points() {
        let lines = gen_lines(5000);
        let mut checked = 0;
        let mut seen_non_ascii_text = false;
        for l in &lines {
            let p = parse(&l.text).expect("generated line parses");
            if p.command != "PRIVMSG" {
                continue;
            }
            let tags = p.tags.unwrap();
            let mut text = p.params[1].to_string();
            if let Some(inner) = text
                .strip_prefix("\x01ACTION ")
                .and_then(|t| t.strip_suffix('\x01'))
            {
                text = inner.to_string();
            }
            seen_non_ascii_text |= !text.is_ascii();
            let chars: Vec<char> = text.chars().collect();
            let em = get_tag(tags, "emotes").unwrap();
            if em.is_empty() {
                continue;
            }
            for part in em.split('/') {
                let (id, ranges) = part.split_once(':').unwrap();
                for r in ranges.split(',') {
                    let (s, e) = r.split_once('-').unwrap();
                    let (s, e): (usize, usize) = (s.parse().unwrap(), e.parse().unwrap());
                    let code: String = chars[s..=e].iter().collect();
                    let known = GLOBAL_EMOTES.iter().any(|(i, c)| *i == id && *c == code)
                        || (id.starts_with("emotesv2_")
                            && code.chars().all(|c| c.is_ascii_alphabetic()));
                    assert!(known, "emote {id} at {s}-{e} is {code:?} in {text:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} emotes checked");
        assert!(seen_non_ascii_text);
    }

    #[test]
    fn replies_duplicates_and_event_mix() {
        let lines = gen_lines(20_000);
        let mut ids = std::collections::HashMap::<u128, usize>::new();
        let mut cmds = std::collections::HashMap::<String, usize>::new();
        let (mut replies, mut escaped_body, mut actions, mut vips, mut bits) = (0, 0, 0, 0, 0);
        for l in &lines {
            let p = parse(&l.text).unwrap();
            *cmds.entry(p.command.clone()).or_default() += 1;
            assert!(l.text.ends_with("\r\n") && !l.text[..l.text.len() - 2].contains(['\r', '\n']));
            if p.command == "PRIVMSG" {
                let tags = p.tags.unwrap();
                let id = get_tag(tags, "id").unwrap();
                assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
                *ids.entry(uuid::Uuid::parse_str(id).unwrap().as_u128())
                    .or_default() += 1;
                assert_eq!(
                    l.sent.as_ref().unwrap().id,
                    uuid::Uuid::parse_str(id).unwrap().as_u128()
                );
                if let Some(body) = get_tag(tags, "reply-parent-msg-body") {
                    replies += 1;
                    escaped_body += body.contains("\\s") as usize;
                    assert!(get_tag(tags, "reply-thread-parent-msg-id").is_some());
                    assert!(
                        p.params[1].starts_with('@') || p.params[1].starts_with("\x01ACTION @")
                    );
                    let _ = unescape(body);
                }
                actions += p.params[1].starts_with("\x01ACTION ") as usize;
                vips += get_tag(tags, "vip").is_some() as usize;
                bits += get_tag(tags, "bits").is_some() as usize;
                assert_eq!(get_tag(tags, "tmi-sent-ts"), Some("1700000000000"));
            }
        }
        let dups = ids.values().filter(|c| **c == 2).count();
        assert!(dups > 50 && dups < 400, "dups {dups}");
        assert!(
            replies > 500 && escaped_body > 100,
            "replies {replies} {escaped_body}"
        );
        assert!(actions > 100 && vips > 10 && bits > 50);
        for c in ["USERNOTICE", "CLEARCHAT", "CLEARMSG", "ROOMSTATE"] {
            assert!(cmds.get(c).copied().unwrap_or(0) > 5, "{c}: {cmds:?}");
        }
    }
}
