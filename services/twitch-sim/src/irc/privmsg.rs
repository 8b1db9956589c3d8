//! A generated PRIVMSG as plain data, and its pure rendering to an IRC line.
//!
//! The generator ([`super::traffic`]) makes every random decision first and gathers them in a
//! [`Privmsg`]; [`Privmsg::render`] then turns that into the line without any randomness, so
//! the line format can be tested with hand-built messages.

use std::fmt::Write as _;

use super::proto::escape_tag;
use super::traffic::User;
use crate::sent::format_uuid;

/// Appends `key=value;` with the value escaped.
pub(crate) fn tag(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push('=');
    escape_tag(value, out);
    out.push(';');
}

/// Whether a server may send `text` as a last IRC parameter without its ':' (one word that
/// does not itself start with ':').
pub(crate) fn colon_optional(text: &str) -> bool {
    !text.is_empty() && !text.contains(' ') && !text.starts_with(':')
}

/// One word of a message body: plain text, or an emote's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word<'a> {
    pub text: &'a str,
    /// The emote id when `text` is an emote code.
    pub emote: Option<&'a str>,
}

/// The message a PRIVMSG replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply<'a> {
    pub id: u128,
    /// Author, an index into the user pool.
    pub user: usize,
    pub body: &'a str,
    /// Thread root (msg id, user index): the parent itself when it is not a reply.
    pub thread: (u128, usize),
}

/// The author's badges in the channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Badges {
    /// Months subscribed, when a subscriber.
    pub sub_months: Option<u64>,
    pub moderator: bool,
    pub vip: bool,
    pub premium: bool,
    pub turbo: bool,
}

/// Everything one PRIVMSG line is made of, decided up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Privmsg<'a> {
    /// Author, an index into the user pool.
    pub user: usize,
    pub id: u128,
    pub reply: Option<Reply<'a>>,
    /// `/me`: the text is wrapped in `\x01ACTION ...\x01`.
    pub is_action: bool,
    /// Bits cheered (`bits` tag and a leading `CheerN` word), 0 for none.
    pub bits: u32,
    /// The words after the reply mention and the cheer.
    pub words: Vec<Word<'a>>,
    pub badges: Badges,
    pub nonce: u128,
    /// List an emote id once per occurrence (`25:1-5/25:9-13`), as real Twitch sometimes
    /// does, instead of once with all its ranges.
    pub split_emote_repeats: bool,
    pub first_msg: bool,
    pub returning_chatter: bool,
    /// Send the text without its ':' (only honoured when [`colon_optional`] allows it).
    pub omit_colon: bool,
    /// Delivered twice (not part of the line; the generator emits it again).
    pub duplicate: bool,
}

/// A rendered PRIVMSG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// The IRC line, `\r\n`-terminated.
    pub line: String,
    /// The message text as typed (no `ACTION` wrapper), as later replies and CLEARMSG quote it.
    pub body: String,
}

type EmoteRanges<'a> = Vec<(&'a str, Vec<(usize, usize)>)>;

impl<'a> Privmsg<'a> {
    /// The body and, per emote id in order of first use, its inclusive ranges counted in
    /// code points.
    fn body(&self, users: &[User]) -> (String, EmoteRanges<'a>) {
        let mut body = String::with_capacity(96);
        let mut pos = 0usize;
        let mut emotes: EmoteRanges<'a> = Vec::new();
        let mut push = |body: &mut String, text: &str| {
            if !body.is_empty() {
                body.push(' ');
                pos += 1;
            }
            body.push_str(text);
            let start = pos;
            pos += text.chars().count();
            start
        };
        if let Some(r) = &self.reply {
            push(&mut body, &format!("@{}", users[r.user].display));
        }
        if self.bits > 0 {
            push(&mut body, &format!("Cheer{}", self.bits));
        }
        for w in &self.words {
            let start = push(&mut body, w.text);
            if let Some(eid) = w.emote {
                let range = (start, start + w.text.chars().count() - 1);
                match emotes.iter_mut().find(|(e, _)| *e == eid) {
                    Some((_, v)) => v.push(range),
                    None => emotes.push((eid, vec![range])),
                }
            }
        }
        (body, emotes)
    }

    /// Renders the line `channel` (login, `room_id`) receives, stamped `ts`; `users` is the
    /// pool that the user indices point into.
    pub(crate) fn render(&self, users: &[User], channel: &str, room_id: &str, ts: u64) -> Rendered {
        let (body, emotes) = self.body(users);
        let u = &users[self.user];
        let b = &self.badges;
        let flag = |on: bool| if on { "1" } else { "0" };

        let mut t = String::with_capacity(640);
        t.push('@');
        let badge_info = b
            .sub_months
            .map(|m| format!("subscriber/{m}"))
            .unwrap_or_default();
        tag(&mut t, "badge-info", &badge_info);
        let mut badges: Vec<String> = Vec::new();
        if b.moderator {
            badges.push("moderator/1".into());
        }
        if b.vip {
            badges.push("vip/1".into());
        }
        if let Some(months) = b.sub_months {
            let tier = [0u64, 3, 6, 12, 24, 36, 48]
                .iter()
                .rev()
                .find(|t| months >= **t)
                .copied()
                .unwrap_or(0);
            badges.push(format!("subscriber/{tier}"));
        }
        if b.premium {
            badges.push("premium/1".into());
        }
        if b.turbo {
            badges.push("turbo/1".into());
        }
        tag(&mut t, "badges", &badges.join(","));
        if self.bits > 0 {
            tag(&mut t, "bits", &self.bits.to_string());
        }
        tag(&mut t, "client-nonce", &format!("{:032x}", self.nonce));
        tag(&mut t, "color", u.color);
        tag(&mut t, "display-name", &u.display);
        let mut em = String::new();
        for (eid, ranges) in &emotes {
            let groups: Vec<&[(usize, usize)]> = if self.split_emote_repeats {
                ranges.chunks(1).collect()
            } else {
                vec![ranges.as_slice()]
            };
            for group in groups {
                if !em.is_empty() {
                    em.push('/');
                }
                em.push_str(eid);
                em.push(':');
                for (j, (s, e)) in group.iter().enumerate() {
                    if j > 0 {
                        em.push(',');
                    }
                    let _ = write!(em, "{s}-{e}");
                }
            }
        }
        tag(&mut t, "emotes", &em);
        tag(&mut t, "first-msg", flag(self.first_msg));
        tag(&mut t, "flags", "");
        tag(&mut t, "id", &format_uuid(self.id));
        tag(&mut t, "mod", flag(b.moderator));
        if let Some(r) = &self.reply {
            let pu = &users[r.user];
            tag(&mut t, "reply-parent-display-name", &pu.display);
            tag(&mut t, "reply-parent-msg-body", r.body);
            tag(&mut t, "reply-parent-msg-id", &format_uuid(r.id));
            tag(&mut t, "reply-parent-user-id", &pu.id);
            tag(&mut t, "reply-parent-user-login", &pu.login);
            let (tid, tu) = r.thread;
            let tu = &users[tu];
            tag(&mut t, "reply-thread-parent-display-name", &tu.display);
            tag(&mut t, "reply-thread-parent-msg-id", &format_uuid(tid));
            tag(&mut t, "reply-thread-parent-user-id", &tu.id);
            tag(&mut t, "reply-thread-parent-user-login", &tu.login);
        }
        tag(&mut t, "returning-chatter", flag(self.returning_chatter));
        tag(&mut t, "room-id", room_id);
        tag(&mut t, "subscriber", flag(b.sub_months.is_some()));
        tag(&mut t, "tmi-sent-ts", &ts.to_string());
        tag(&mut t, "turbo", flag(b.turbo));
        tag(&mut t, "user-id", &u.id);
        tag(&mut t, "user-type", if b.moderator { "mod" } else { "" });
        if b.vip {
            tag(&mut t, "vip", "1");
        }
        t.pop(); // trailing ';'
        let text = if self.is_action {
            format!("\x01ACTION {body}\x01")
        } else {
            body.clone()
        };
        // IRC lets a server omit the ':' before a last parameter without spaces, and Twitch
        // does for one-word messages (`PRIVMSG #pajlada Cheer1`).
        let colon = if self.omit_colon && colon_optional(&text) {
            ""
        } else {
            ":"
        };
        let _ = write!(
            t,
            " :{l}!{l}@{l}.tmi.twitch.tv PRIVMSG #{channel} {colon}{text}\r\n",
            l = u.login,
        );
        Rendered { line: t, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, login: &str, display: &str, color: &'static str) -> User {
        User {
            id: id.into(),
            login: login.into(),
            display: display.into(),
            color,
        }
    }

    /// 0: the author, 1: the parent's author (a CJK display name: 1 char = 3 bytes), 2: the
    /// thread root's author.
    fn users() -> Vec<User> {
        vec![
            user("101", "viewer", "Viewer", "#1E90FF"),
            user("102", "pan_x", "パン", ""),
            user("103", "root", "Root", "#FF0000"),
        ]
    }

    const ID: u128 = 0x0123_4567_89ab_4cde_8f01_2345_6789_abcd;
    const NONCE: u128 = 0xfeed;

    fn word(text: &str) -> Word<'_> {
        Word { text, emote: None }
    }

    fn emote<'a>(id: &'a str, code: &'a str) -> Word<'a> {
        Word {
            text: code,
            emote: Some(id),
        }
    }

    fn plain<'a>(words: Vec<Word<'a>>) -> Privmsg<'a> {
        Privmsg {
            user: 0,
            id: ID,
            reply: None,
            is_action: false,
            bits: 0,
            words,
            badges: Badges::default(),
            nonce: NONCE,
            split_emote_repeats: false,
            first_msg: false,
            returning_chatter: false,
            omit_colon: false,
            duplicate: false,
        }
    }

    fn render(m: &Privmsg<'_>) -> Rendered {
        m.render(&users(), "forsen", "22484632", 1_700_000_000_000)
    }

    /// A moderator subscribed 14 months cheers 100 bits in a reply, with Kappa twice.
    fn reply_with_bits() -> Privmsg<'static> {
        Privmsg {
            reply: Some(Reply {
                id: 0x1111_1111_1111_4111_8111_1111_1111_1111,
                user: 1,
                body: "hi there; yes",
                thread: (0x2222_2222_2222_4222_8222_2222_2222_2222, 2),
            }),
            bits: 100,
            badges: Badges {
                sub_months: Some(14),
                moderator: true,
                ..Badges::default()
            },
            // Not honoured: the text has spaces.
            omit_colon: true,
            ..plain(vec![
                emote("25", "Kappa"),
                word("lol"),
                emote("25", "Kappa"),
                emote("emotesv2_ab", "forsenHype"),
            ])
        }
    }

    #[test]
    fn reply_with_bits_and_a_repeated_emote() {
        let r = render(&reply_with_bits());
        // "@パン" is 3 code points (7 bytes): Cheer100 starts at 4, not 8.
        assert_eq!(r.body, "@パン Cheer100 Kappa lol Kappa forsenHype");
        assert_eq!(
            r.line,
            "@badge-info=subscriber/14;badges=moderator/1,subscriber/12;bits=100;\
             client-nonce=0000000000000000000000000000feed;color=#1E90FF;display-name=Viewer;\
             emotes=25:13-17,23-27/emotesv2_ab:29-38;first-msg=0;flags=;\
             id=01234567-89ab-4cde-8f01-23456789abcd;mod=1;\
             reply-parent-display-name=パン;reply-parent-msg-body=hi\\sthere\\:\\syes;\
             reply-parent-msg-id=11111111-1111-4111-8111-111111111111;\
             reply-parent-user-id=102;reply-parent-user-login=pan_x;\
             reply-thread-parent-display-name=Root;\
             reply-thread-parent-msg-id=22222222-2222-4222-8222-222222222222;\
             reply-thread-parent-user-id=103;reply-thread-parent-user-login=root;\
             returning-chatter=0;room-id=22484632;subscriber=1;tmi-sent-ts=1700000000000;\
             turbo=0;user-id=101;user-type=mod \
             :viewer!viewer@viewer.tmi.twitch.tv PRIVMSG #forsen \
             :@パン Cheer100 Kappa lol Kappa forsenHype\r\n"
        );
    }

    #[test]
    fn split_emote_repeats_lists_each_occurrence() {
        let m = Privmsg {
            split_emote_repeats: true,
            ..reply_with_bits()
        };
        let line = render(&m).line;
        assert!(
            line.contains(";emotes=25:13-17/25:23-27/emotesv2_ab:29-38;"),
            "{line}"
        );
    }

    #[test]
    fn one_word_message_without_colon() {
        let m = Privmsg {
            omit_colon: true,
            first_msg: true,
            ..plain(vec![emote("25", "Kappa")])
        };
        assert_eq!(
            render(&m).line,
            "@badge-info=;badges=;client-nonce=0000000000000000000000000000feed;color=#1E90FF;\
             display-name=Viewer;emotes=25:0-4;first-msg=1;flags=;\
             id=01234567-89ab-4cde-8f01-23456789abcd;mod=0;returning-chatter=0;\
             room-id=22484632;subscriber=0;tmi-sent-ts=1700000000000;turbo=0;user-id=101;\
             user-type= :viewer!viewer@viewer.tmi.twitch.tv PRIVMSG #forsen Kappa\r\n"
        );
        // Kept when not asked for.
        let m = plain(vec![emote("25", "Kappa")]);
        assert!(render(&m).line.ends_with(" PRIVMSG #forsen :Kappa\r\n"));
    }

    #[test]
    fn colon_kept_when_it_cannot_be_omitted() {
        // A word starting with ':' would lose it; an ACTION always has a space.
        let m = Privmsg {
            omit_colon: true,
            ..plain(vec![word(":D")])
        };
        assert!(render(&m).line.ends_with(" PRIVMSG #forsen ::D\r\n"));
        let m = Privmsg {
            omit_colon: true,
            is_action: true,
            ..plain(vec![emote("25", "Kappa")])
        };
        let r = render(&m);
        assert!(r
            .line
            .ends_with(" PRIVMSG #forsen :\x01ACTION Kappa\x01\r\n"));
        // Emote positions count from the text inside the ACTION wrapper.
        assert!(r.line.contains(";emotes=25:0-4;"));
        assert_eq!(r.body, "Kappa");
        assert!(colon_optional("Cheer1") && !colon_optional("") && !colon_optional("a b"));
    }

    #[test]
    fn vip_premium_turbo_and_returning() {
        let m = Privmsg {
            user: 2,
            badges: Badges {
                sub_months: Some(2),
                vip: true,
                premium: true,
                turbo: true,
                ..Badges::default()
            },
            returning_chatter: true,
            ..plain(vec![word("hello"), word("chat")])
        };
        assert_eq!(
            render(&m).line,
            "@badge-info=subscriber/2;badges=vip/1,subscriber/0,premium/1,turbo/1;\
             client-nonce=0000000000000000000000000000feed;color=#FF0000;display-name=Root;\
             emotes=;first-msg=0;flags=;id=01234567-89ab-4cde-8f01-23456789abcd;mod=0;\
             returning-chatter=1;room-id=22484632;subscriber=1;tmi-sent-ts=1700000000000;\
             turbo=1;user-id=103;user-type=;vip=1 \
             :root!root@root.tmi.twitch.tv PRIVMSG #forsen :hello chat\r\n"
        );
    }
}
