//! The zero-copy line parser.

use std::borrow::Cow;

use memchr::{memchr, memchr_iter};
use tci_schemas::scan;

use super::escape::unescape;

/// Longest line accepted, in bytes (without the line ending). Twitch caps lines far below this
/// (about 8 KiB with tags); the limit only bounds what a misbehaving peer can make us hold.
pub const MAX_LINE_LEN: usize = 1024 * 1024;

/// Why a line is not an IRC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but a line ending (or nothing at all).
    #[error("empty line")]
    Empty,
    /// Longer than [`MAX_LINE_LEN`].
    #[error("line too long: {len} bytes (limit {MAX_LINE_LEN})")]
    LineTooLong {
        /// Length of the line in bytes.
        len: usize,
    },
    /// Not valid UTF-8 (only from [`parse_bytes`]).
    #[error("invalid UTF-8 after {valid_up_to} bytes")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The line starts with `@` but no space ends the tags.
    #[error("tags are not followed by a space")]
    TagsWithoutSpace,
    /// The line has a `:prefix` but nothing after it.
    #[error("prefix is not followed by a command")]
    PrefixWithoutCommand,
    /// A `:` with no prefix text after it.
    #[error("empty prefix")]
    EmptyPrefix,
    /// Nothing where the command should be.
    #[error("missing command")]
    MissingCommand,
    /// The command is neither letters nor a three-digit numeric.
    #[error("invalid command {0:?}")]
    InvalidCommand(String),
}

impl ParseError {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::LineTooLong { .. } => "too_long",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::TagsWithoutSpace => "tags_without_space",
            Self::PrefixWithoutCommand => "prefix_without_command",
            Self::EmptyPrefix => "empty_prefix",
            Self::MissingCommand => "missing_command",
            Self::InvalidCommand(_) => "invalid_command",
        }
    }
}

/// The source of a message: `nick!user@host`, or a server name (then only `nick` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix<'a> {
    /// The whole prefix, without the leading `:`.
    pub raw: &'a str,
    /// The nick (for Twitch: the sender's login), or the server name.
    pub nick: &'a str,
    /// The user part after `!`.
    pub user: Option<&'a str>,
    /// The host part after `@`.
    pub host: Option<&'a str>,
}

impl<'a> Prefix<'a> {
    fn parse(raw: &'a str) -> Self {
        let (before_host, host) = match scan::split_once(raw, b'@') {
            Some((b, h)) => (b, Some(h)),
            None => (raw, None),
        };
        let (nick, user) = match scan::split_once(before_host, b'!') {
            Some((n, u)) => (n, Some(u)),
            None => (before_host, None),
        };
        Self {
            raw,
            nick,
            user,
            host,
        }
    }
}

/// One IRC line, borrowing every part from the input.
///
/// Parsing only finds the boundaries of the parts; tags and parameters are split lazily when
/// asked for, so a message costs no allocation at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    raw: &'a str,
    tags: &'a str,
    prefix: Option<Prefix<'a>>,
    command: &'a str,
    middle: &'a str,
    trailing: Option<&'a str>,
}

/// Parses one line. A trailing `\r\n`, `\n` or `\r` is ignored.
///
/// Never panics; every malformed input gives a [`ParseError`].
pub fn parse(line: &str) -> Result<Message<'_>, ParseError> {
    let line = strip_line_ending(line);
    if line.len() > MAX_LINE_LEN {
        return Err(ParseError::LineTooLong { len: line.len() });
    }
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut rest = line;

    let mut tags = "";
    if let Some(after_at) = rest.strip_prefix('@') {
        let space = memchr(b' ', after_at.as_bytes()).ok_or(ParseError::TagsWithoutSpace)?;
        tags = &after_at[..space];
        rest = skip_spaces(&after_at[space..]);
    }

    let mut prefix = None;
    if let Some(after_colon) = rest.strip_prefix(':') {
        let space = memchr(b' ', after_colon.as_bytes()).ok_or(ParseError::PrefixWithoutCommand)?;
        if space == 0 {
            return Err(ParseError::EmptyPrefix);
        }
        prefix = Some(Prefix::parse(&after_colon[..space]));
        rest = skip_spaces(&after_colon[space..]);
    }

    let end = memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
    let command = &rest[..end];
    if command.is_empty() {
        return Err(ParseError::MissingCommand);
    }
    if !is_valid_command(command) {
        return Err(ParseError::InvalidCommand(command.to_owned()));
    }
    // `rest` is now empty or starts with a space.
    rest = &rest[end..];

    // The first parameter that starts with ':' is the trailing one; it always follows a space.
    let bytes = rest.as_bytes();
    let (middle, trailing) =
        match memchr_iter(b' ', bytes).find(|&i| bytes.get(i + 1) == Some(&b':')) {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };

    Ok(Message {
        raw: line,
        tags,
        prefix,
        command,
        middle,
        trailing,
    })
}

/// Parses a line of bytes: checks UTF-8 (and the length, first), then [`parse`].
pub fn parse_bytes(line: &[u8]) -> Result<Message<'_>, ParseError> {
    let len =
        line.len() - usize::from(line.ends_with(b"\n")) - usize::from(line.ends_with(b"\r\n"));
    if len > MAX_LINE_LEN {
        return Err(ParseError::LineTooLong { len });
    }
    let s = std::str::from_utf8(line).map_err(|e| ParseError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    parse(s)
}

fn strip_line_ending(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

fn skip_spaces(s: &str) -> &str {
    s.trim_start_matches(' ')
}

fn is_valid_command(c: &str) -> bool {
    let b = c.as_bytes();
    b.iter().all(u8::is_ascii_alphabetic) || (b.len() == 3 && b.iter().all(u8::is_ascii_digit))
}

impl<'a> Message<'a> {
    /// The whole line, without its line ending.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The command as sent (`PRIVMSG`, `001`, ...).
    pub fn command(&self) -> &'a str {
        self.command
    }

    /// The prefix, when the line has one.
    pub fn prefix(&self) -> Option<Prefix<'a>> {
        self.prefix
    }

    /// The nick of the prefix (the sender's login for chat messages).
    pub fn nick(&self) -> Option<&'a str> {
        self.prefix.map(|p| p.nick)
    }

    /// The raw tag section without the leading `@` (empty when there are no tags).
    pub fn tags_raw(&self) -> &'a str {
        self.tags
    }

    /// The tags in line order as `(key, raw value)`; values are still escaped, see
    /// [`unescape`](super::unescape). A tag without `=` has an empty value.
    pub fn tags(&self) -> Tags<'a> {
        Tags { rest: self.tags }
    }

    /// The raw (escaped) value of the first tag named `key`.
    pub fn tag_raw(&self, key: &str) -> Option<&'a str> {
        self.tags().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The unescaped value of the first tag named `key`; borrowed when it holds no escape.
    pub fn tag(&self, key: &str) -> Option<Cow<'a, str>> {
        self.tag_raw(key).map(unescape)
    }

    /// Whether a tag named `key` is present (with any value).
    pub fn has_tag(&self, key: &str) -> bool {
        self.tag_raw(key).is_some()
    }

    /// The middle parameters (everything before the trailing one), in order.
    pub fn params(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.middle.split(' ').filter(|p| !p.is_empty())
    }

    /// The text after ` :`, when present (may be empty).
    pub fn trailing(&self) -> Option<&'a str> {
        self.trailing
    }

    /// The text after the target (the first parameter): the message of a PRIVMSG or
    /// USERNOTICE, the deleted message of a CLEARMSG, the login of a CLEARCHAT.
    ///
    /// IRC lets a server omit the `:` before a last parameter that holds no space, and Twitch
    /// does (`PRIVMSG #pajlada Cheer1`), so this is the trailing parameter when there is one,
    /// else whatever follows the first middle parameter. `None` when there is nothing after the
    /// target; `Some("")` for an explicit empty trailing (`PRIVMSG #c :`).
    pub fn text(&self) -> Option<&'a str> {
        if self.trailing.is_some() {
            return self.trailing;
        }
        let rest = self.middle.trim_start_matches(' ');
        let after_target = &rest[memchr(b' ', rest.as_bytes())?..];
        let after_target = after_target.trim_matches(' ');
        (!after_target.is_empty()).then_some(after_target)
    }

    /// The first middle parameter, with its leading `#` removed when it is a channel.
    pub fn channel(&self) -> Option<&'a str> {
        let first = self.params().next()?;
        first.strip_prefix('#')
    }
}

/// Iterator over `(key, raw value)` pairs of a tag section. Empty entries (`;;`) are skipped.
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest;
            if rest.is_empty() {
                return None;
            }
            // The key ends at the first `=` or `;`; a value, at the next `;`.
            let k = scan::find2(rest, b'=', b';').unwrap_or(rest.len());
            let (key, value, end) = if rest.as_bytes().get(k) == Some(&b'=') {
                let v = &rest[k + 1..];
                let n = scan::find(v, b';').unwrap_or(v.len());
                (&rest[..k], &v[..n], k + 1 + n)
            } else {
                (&rest[..k], "", k)
            };
            self.rest = rest.get(end + 1..).unwrap_or("");
            if end == 0 {
                continue;
            }
            return Some((key, value));
        }
    }
}
