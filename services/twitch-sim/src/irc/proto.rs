//! IRC line parsing (client input) and Twitch tag escaping (server output).

/// A parsed client line. Borrowed from the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// Raw tags section without the leading `@`, if any.
    pub tags: Option<&'a str>,
    /// Upper-cased command.
    pub command: String,
    /// Middle params followed by the trailing param (without its `:`).
    pub params: Vec<&'a str>,
}

/// Longest client line accepted (Twitch's limit is 8191 bytes with tags).
pub(crate) const MAX_CLIENT_LINE: usize = 8192;

/// Parses `[@tags ][:prefix ]COMMAND [params] [:trailing]`. `None` when malformed.
pub(crate) fn parse(line: &str) -> Option<Line<'_>> {
    if line.len() > MAX_CLIENT_LINE || line.contains('\0') {
        return None;
    }
    let mut rest = line.trim_end_matches(['\r', '\n']);
    let mut tags = None;
    if let Some(r) = rest.strip_prefix('@') {
        let (t, r) = r.split_once(' ')?;
        tags = Some(t);
        rest = r.trim_start_matches(' ');
    }
    if let Some(r) = rest.strip_prefix(':') {
        let (_, r) = r.split_once(' ')?;
        rest = r.trim_start_matches(' ');
    }
    let (command, mut rest) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if command.is_empty() || !command.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        match rest.split_once(' ') {
            Some((p, r)) => {
                params.push(p);
                rest = r;
            }
            None => {
                params.push(rest);
                break;
            }
        }
    }
    Some(Line {
        tags,
        command: command.to_ascii_uppercase(),
        params,
    })
}

/// Escapes an IRCv3 tag value (`\s`, `\:`, `\\`, `\r`, `\n`).
pub(crate) fn escape_tag(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            ' ' => out.push_str("\\s"),
            ';' => out.push_str("\\:"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
/// Returns the escaped form of a tag value.
pub(crate) fn escaped(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 8);
    escape_tag(value, &mut s);
    s
}

/// A valid Twitch channel login (lowercase ASCII letters, digits, `_`, 1..=25 chars).
pub(crate) fn valid_login(login: &str) -> bool {
    (1..=25).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Value of tag `key` in a raw (still escaped) tags section.
pub(crate) fn tag<'a>(tags: &'a str, key: &str) -> Option<&'a str> {
    tags.split(';').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == key => Some(v),
        None if kv == key => Some(""),
        _ => None,
    })
}

/// The command of a server line (skipping tags and prefix), for capability filtering.
pub(crate) fn command_of(line: &str) -> &str {
    let mut rest = line;
    if rest.starts_with('@') {
        rest = rest.split_once(' ').map_or("", |x| x.1);
    }
    if rest.starts_with(':') {
        rest = rest.split_once(' ').map_or("", |x| x.1);
    }
    rest.split(' ').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_lines() {
        let l = parse("CAP REQ :twitch.tv/tags twitch.tv/commands").unwrap();
        assert_eq!(l.command, "CAP");
        assert_eq!(l.params, vec!["REQ", "twitch.tv/tags twitch.tv/commands"]);
        let l = parse("@a=b :nick!n@h privmsg #chan :hi there :)").unwrap();
        assert_eq!(l.tags, Some("a=b"));
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, vec!["#chan", "hi there :)"]);
        assert_eq!(parse("PING").unwrap().params.len(), 0);
        assert_eq!(parse("JOIN #a,#b").unwrap().params, vec!["#a,#b"]);
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "@tagsonly", ":prefixonly", "PR!VMSG x", "\0PING", " "] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        assert!(parse(&"A".repeat(MAX_CLIENT_LINE + 1)).is_none());
    }

    #[test]
    fn escapes_tags() {
        assert_eq!(escaped("a b;c\\d"), "a\\sb\\:c\\\\d");
        assert_eq!(tag("a=1;id=xyz;c=", "id"), Some("xyz"));
        assert_eq!(tag("a=1;c=", "c"), Some(""));
        assert_eq!(command_of("@x=y :tmi.twitch.tv ROOMSTATE #a"), "ROOMSTATE");
        assert_eq!(command_of("PING :tmi.twitch.tv"), "PING");
    }

    #[test]
    fn logins() {
        assert!(valid_login("sneaky_lol42"));
        assert!(!valid_login("Sneaky"));
        assert!(!valid_login(""));
        assert!(!valid_login(&"a".repeat(26)));
    }
}
