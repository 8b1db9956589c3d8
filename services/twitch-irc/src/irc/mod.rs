//! Zero-copy IRCv3 line parsing for Twitch chat.
//!
//! [`parse`] splits a line into tags, prefix, command, parameters and trailing text without
//! allocating: a [`Message`] only borrows from the line. Tag values are kept raw and unescaped
//! on demand ([`Message::tag`], [`unescape`]), so the common value without escapes is never
//! copied.
//!
//! ```
//! use tci_irc::irc;
//!
//! let m = irc::parse("@display-name=A\\sB;mod=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hi there").unwrap();
//! assert_eq!(m.command(), "PRIVMSG");
//! assert_eq!(m.channel(), Some("chan"));
//! assert_eq!(m.trailing(), Some("hi there"));
//! assert_eq!(m.tag("display-name").as_deref(), Some("A B"));
//! assert_eq!(m.tags().collect::<Vec<_>>(), [("display-name", "A\\sB"), ("mod", "1")]);
//! ```

mod escape;
mod message;

pub use escape::{escape, unescape};
pub use message::{parse, parse_bytes, Message, ParseError, Prefix, Tags, MAX_LINE_LEN};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/twitch_lines.txt");

    #[test]
    fn privmsg_with_tags_prefix_and_trailing() {
        let line = "@badge-info=subscriber/38;badges=vip/1,subscriber/36;color=#FF69B4;display-name=CakeBud;emotes=;id=435c;reply-parent-msg-body=@cakebud\\sironmouse;room-id=24538518;tmi-sent-ts=1706408361811;vip=1 :cakebud!cakebud@cakebud.tmi.twitch.tv PRIVMSG #sneakylol :@Uhblivean24 trying my best Suffering\r\n";
        let m = parse(line).unwrap();
        assert_eq!(m.command(), "PRIVMSG");
        let p = m.prefix().unwrap();
        assert_eq!(p.nick, "cakebud");
        assert_eq!(p.user, Some("cakebud"));
        assert_eq!(p.host, Some("cakebud.tmi.twitch.tv"));
        assert_eq!(m.nick(), Some("cakebud"));
        assert_eq!(m.channel(), Some("sneakylol"));
        assert_eq!(m.params().collect::<Vec<_>>(), ["#sneakylol"]);
        assert_eq!(m.trailing(), Some("@Uhblivean24 trying my best Suffering"));
        assert!(!m.raw().ends_with(['\r', '\n']));
        assert_eq!(
            m.tag_raw("reply-parent-msg-body"),
            Some("@cakebud\\sironmouse")
        );
        assert_eq!(
            m.tag("reply-parent-msg-body").as_deref(),
            Some("@cakebud ironmouse")
        );
        assert!(matches!(
            m.tag("color"),
            Some(std::borrow::Cow::Borrowed("#FF69B4"))
        ));
        assert_eq!(m.tag("emotes").as_deref(), Some(""));
        assert_eq!(m.tag("absent"), None);
        assert!(m.has_tag("vip"));
        let keys: Vec<_> = m.tags().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "badge-info",
                "badges",
                "color",
                "display-name",
                "emotes",
                "id",
                "reply-parent-msg-body",
                "room-id",
                "tmi-sent-ts",
                "vip"
            ]
        );
    }

    #[test]
    fn server_prefix_has_only_a_nick() {
        let m = parse(":tmi.twitch.tv RECONNECT").unwrap();
        assert_eq!(m.command(), "RECONNECT");
        let p = m.prefix().unwrap();
        assert_eq!(
            (p.raw, p.nick, p.user, p.host),
            ("tmi.twitch.tv", "tmi.twitch.tv", None, None)
        );
        assert_eq!(m.params().count(), 0);
        assert_eq!(m.trailing(), None);
        assert_eq!(m.tags().count(), 0);
        assert_eq!(m.channel(), None);
    }

    #[test]
    fn ping_without_prefix() {
        let m = parse("PING :tmi.twitch.tv").unwrap();
        assert_eq!(m.prefix(), None);
        assert_eq!(m.command(), "PING");
        assert_eq!(m.trailing(), Some("tmi.twitch.tv"));
    }

    #[test]
    fn join_and_numeric() {
        let m = parse(":ronni!ronni@ronni.tmi.twitch.tv JOIN #dallas").unwrap();
        assert_eq!(m.command(), "JOIN");
        assert_eq!(m.channel(), Some("dallas"));
        assert_eq!(m.trailing(), None);

        let m = parse(":x.tmi.twitch.tv 353 x = #dallas :ronni fred wilma").unwrap();
        assert_eq!(m.command(), "353");
        assert_eq!(m.params().collect::<Vec<_>>(), ["x", "=", "#dallas"]);
        assert_eq!(m.channel(), None, "first param is not a channel");
        assert_eq!(m.trailing(), Some("ronni fred wilma"));
    }

    #[test]
    fn trailing_keeps_colons_and_may_be_empty() {
        let m = parse("PRIVMSG #c :a :b: c").unwrap();
        assert_eq!(m.trailing(), Some("a :b: c"));
        let m = parse("PRIVMSG #c :").unwrap();
        assert_eq!(m.trailing(), Some(""));
        let m = parse("CAP * LS :").unwrap();
        assert_eq!(m.params().collect::<Vec<_>>(), ["*", "LS"]);
        // A colon inside a middle parameter does not start the trailing one.
        let m = parse("FOO a:b c").unwrap();
        assert_eq!(m.params().collect::<Vec<_>>(), ["a:b", "c"]);
        assert_eq!(m.trailing(), None);
    }

    #[test]
    fn text_with_and_without_the_colon() {
        // RFC 1459: the colon may be omitted before a last parameter without spaces.
        let m = parse("@id=1 :u!u@u PRIVMSG #pajlada Cheer1").unwrap();
        assert_eq!(m.trailing(), None);
        assert_eq!(m.channel(), Some("pajlada"));
        assert_eq!(m.text(), Some("Cheer1"));
        let m = parse(":u!u@u PRIVMSG #c :two words").unwrap();
        assert_eq!(m.text(), Some("two words"));
        let m = parse(":u!u@u PRIVMSG #c :").unwrap();
        assert_eq!(m.text(), Some(""));
        let m = parse(":u!u@u PRIVMSG #c").unwrap();
        assert_eq!(m.text(), None);
        let m = parse(":u!u@u PRIVMSG   #c   word  ").unwrap();
        assert_eq!(m.text(), Some("word"));
        let m = parse(":tmi.twitch.tv CLEARCHAT #c ronni").unwrap();
        assert_eq!(m.text(), Some("ronni"));
        let m = parse(":tmi.twitch.tv CLEARCHAT #c").unwrap();
        assert_eq!(m.text(), None);
    }

    #[test]
    fn extra_spaces_are_tolerated() {
        let m = parse("@a=1  :n!n@h  PRIVMSG   #c   :x y").unwrap();
        assert_eq!(m.nick(), Some("n"));
        assert_eq!(m.command(), "PRIVMSG");
        assert_eq!(m.channel(), Some("c"));
        assert_eq!(m.trailing(), Some("x y"));
    }

    #[test]
    fn odd_tags() {
        let m = parse("@a;b=;=c;;d=1=2;e=\\ :tmi.twitch.tv X").unwrap();
        let tags: Vec<_> = m.tags().collect();
        assert_eq!(
            tags,
            [("a", ""), ("b", ""), ("", "c"), ("d", "1=2"), ("e", "\\")]
        );
        assert_eq!(
            m.tag("e").as_deref(),
            Some(""),
            "trailing lone backslash dropped"
        );
        assert_eq!(m.tag("a").as_deref(), Some(""));
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("\r\n"), Err(ParseError::Empty));
        assert_eq!(parse("@a=b"), Err(ParseError::TagsWithoutSpace));
        assert_eq!(parse("@a=b "), Err(ParseError::MissingCommand));
        assert_eq!(
            parse(":tmi.twitch.tv"),
            Err(ParseError::PrefixWithoutCommand)
        );
        assert_eq!(parse(": PING"), Err(ParseError::EmptyPrefix));
        assert_eq!(parse(":tmi.twitch.tv "), Err(ParseError::MissingCommand));
        assert_eq!(parse(" PING"), Err(ParseError::MissingCommand));
        assert_eq!(
            parse("PRIV-MSG #a"),
            Err(ParseError::InvalidCommand("PRIV-MSG".into()))
        );
        assert_eq!(parse("12 x"), Err(ParseError::InvalidCommand("12".into())));
        let long = format!("PRIVMSG #a :{}", "x".repeat(MAX_LINE_LEN));
        assert_eq!(
            parse(&long),
            Err(ParseError::LineTooLong { len: long.len() })
        );
        assert_eq!(
            parse_bytes(long.as_bytes()),
            Err(ParseError::LineTooLong { len: long.len() })
        );
        assert_eq!(
            parse_bytes(b"PRIVMSG #a :\xff"),
            Err(ParseError::InvalidUtf8 { valid_up_to: 12 })
        );
    }

    #[test]
    fn line_exactly_at_the_limit_parses() {
        let head = "PRIVMSG #a :";
        let line = format!("{head}{}\r\n", "x".repeat(MAX_LINE_LEN - head.len()));
        assert!(parse(&line).is_ok());
        assert!(parse_bytes(line.as_bytes()).is_ok());
    }

    #[test]
    fn every_fixture_line_parses() {
        for line in FIXTURE.lines() {
            let m = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(parse_bytes(line.as_bytes()), Ok(m));
            // Rebuilding the tags from the parts gives back the raw section.
            let rebuilt: Vec<String> = m.tags().map(|(k, v)| format!("{k}={v}")).collect();
            if !m.tags_raw().is_empty() {
                assert_eq!(rebuilt.join(";"), m.tags_raw());
            }
        }
    }

    #[test]
    fn non_ascii_display_name() {
        let line = FIXTURE.lines().find(|l| l.contains("yukirin_jp")).unwrap();
        let m = parse(line).unwrap();
        assert_eq!(m.tag("display-name").as_deref(), Some("ゆきりん"));
        assert_eq!(m.trailing(), Some("こんにちは🎉🎉 😀 Kappa 最高"));
    }

    fn tag_value() -> impl Strategy<Value = String> {
        "[a-z0-9 ;\\\\\r\n=é😀]{0,12}"
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = parse_bytes(&bytes) {
                for (k, _) in m.tags() {
                    let _ = m.tag(k);
                }
                let _ = m.params().count();
                let _ = (m.channel(), m.trailing(), m.nick());
            }
        }

        /// The tag iterator splits as `split(';')` and `split_once('=')` would, empty tags
        /// skipped, whatever the lengths and wherever the separators fall in its 8-byte words.
        #[test]
        fn tags_split_as_the_plain_reference(section in "[a-c;=\\\\é]{0,40}") {
            let line = format!("@{section} :n!n@n PRIVMSG #c :hi");
            let m = parse(&line).unwrap();
            let reference: Vec<(&str, &str)> = section
                .split(';')
                .filter(|t| !t.is_empty())
                .map(|t| t.split_once('=').unwrap_or((t, "")))
                .collect();
            prop_assert_eq!(m.tags().collect::<Vec<_>>(), reference);
        }

        #[test]
        fn never_panics_on_irc_like_strings(s in "[@:; =#!a-zA-Z0-9\\\\\r\n]{0,80}") {
            if let Ok(m) = parse(&s) {
                for (k, _) in m.tags() {
                    let _ = m.tag(k);
                }
                let _ = m.params().count();
                let _ = m.channel();
            }
        }

        #[test]
        fn built_lines_parse_back(
            tags in proptest::collection::vec(("[a-z][a-z0-9-]{0,8}", tag_value()), 0..6),
            nick in "[a-z0-9_]{1,10}",
            channel in "[a-z0-9_]{1,10}",
            text in "[^\r\n\u{0}]{0,40}",
        ) {
            let mut line = String::new();
            if !tags.is_empty() {
                let t: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={}", escape(v))).collect();
                line = format!("@{} ", t.join(";"));
            }
            line.push_str(&format!(":{nick}!{nick}@{nick}.tmi.twitch.tv PRIVMSG #{channel} :{text}"));
            let m = parse(&line).unwrap();
            prop_assert_eq!(m.nick(), Some(nick.as_str()));
            prop_assert_eq!(m.channel(), Some(channel.as_str()));
            prop_assert_eq!(m.trailing(), Some(text.as_str()));
            let got: Vec<(String, String)> =
                m.tags().map(|(k, v)| (k.to_owned(), unescape(v).into_owned())).collect();
            prop_assert_eq!(got, tags);
        }
    }
}
