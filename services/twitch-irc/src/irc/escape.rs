//! IRCv3 message-tag value escaping (<https://ircv3.net/specs/extensions/message-tags>).
//!
//! | raw  | value          |
//! |------|----------------|
//! | `\:` | `;`            |
//! | `\s` | space          |
//! | `\\` | `\`            |
//! | `\r` | CR             |
//! | `\n` | LF             |
//!
//! Any other escaped character `\x` stands for `x` itself, and a lone backslash at the very end
//! of a value is dropped. Both directions return [`Cow::Borrowed`] when nothing needs changing,
//! which is the common case on Twitch (most tag values hold no escapes).

use std::borrow::Cow;

/// Unescapes a raw tag value. Borrows when `raw` holds no backslash.
pub fn unescape(raw: &str) -> Cow<'_, str> {
    let Some(first) = tci_schemas::scan::find(raw, b'\\') else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut chars = raw[first..].chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            // `\\` and every unknown escape keep the escaped character.
            Some(other) => out.push(other),
            // A trailing lone backslash is dropped.
            None => {}
        }
    }
    Cow::Owned(out)
}

/// Escapes a tag value so that [`unescape`] gives it back. Borrows when nothing needs escaping.
pub fn escape(value: &str) -> Cow<'_, str> {
    let needs = |b: u8| matches!(b, b';' | b' ' | b'\\' | b'\r' | b'\n');
    let Some(first) = value.bytes().position(needs) else {
        return Cow::Borrowed(value);
    };
    let mut out = String::with_capacity(value.len() + 8);
    out.push_str(&value[..first]);
    for c in value[first..].chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unescape_known_escapes() {
        assert_eq!(unescape(r"a\sb\:c\\d\re\nf"), "a b;c\\d\re\nf");
    }

    #[test]
    fn unescape_borrows_without_backslash() {
        assert!(matches!(
            unescape("plain value"),
            Cow::Borrowed("plain value")
        ));
        assert!(matches!(unescape(""), Cow::Borrowed("")));
    }

    #[test]
    fn unescape_unknown_escape_keeps_the_character() {
        assert_eq!(unescape(r"\b\x\é"), "bxé");
    }

    #[test]
    fn unescape_drops_trailing_lone_backslash() {
        assert_eq!(unescape("abc\\"), "abc");
        assert_eq!(unescape("\\"), "");
        // An escaped backslash at the end is not a lone one.
        assert_eq!(unescape(r"abc\\"), "abc\\");
    }

    #[test]
    fn twitch_system_msg() {
        assert_eq!(
            unescape(r"ronni\shas\ssubscribed\sfor\s6\smonths!"),
            "ronni has subscribed for 6 months!"
        );
    }

    #[test]
    fn escape_known_characters() {
        assert_eq!(escape("a b;c\\d\re\nf"), r"a\sb\:c\\d\re\nf");
        assert!(matches!(escape("nothing_to_do"), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn escape_unescape_round_trip(s in any::<String>()) {
            let escaped = escape(&s);
            prop_assert_eq!(unescape(&escaped), s.as_str());
        }

        #[test]
        fn escaped_values_hold_no_separators(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(!e.contains([';', ' ', '\r', '\n']));
        }

        #[test]
        fn unescape_never_panics(s in any::<String>()) {
            let _ = unescape(&s);
        }
    }
}
