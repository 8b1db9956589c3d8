//! A minimal JSON writer that reproduces Python's `json.dumps` defaults byte for byte:
//! `", "` between items, `": "` after keys, and `ensure_ascii` escaping (every non-ASCII code
//! point as `\uXXXX`, astral ones as a surrogate pair). The original service stored messages in
//! this format; the API keeps serving it unchanged.
//!
//! The API serves that document as a string inside its own JSON, so the writer can also write it
//! already escaped for that ([`PyJson::embedded`]): one pass instead of writing the document and
//! escaping it again (what [`escape_json_content`] would do to the plain document, byte for byte).

/// Writes an object key known when compiling with [`Fixed::lit`]: `key!(w, "k")` writes
/// `, "k": ` and `key!(w, first "k")` writes `"k": `, each in one copy of a literal of known
/// length (written as the embedded form `\"k\": ` in an embedded document). The key must be
/// printable ASCII without `"` or `\`: what [`PyJson::key`] would write for it (the
/// spec-sample and real-line tests compare whole documents).
#[macro_export]
macro_rules! key {
    ($w:expr, first $k:literal) => {
        $w.lit(concat!("\"", $k, "\": "), concat!("\\\"", $k, "\\\": "))
    };
    ($w:expr, $k:literal) => {
        $w.lit(concat!(", \"", $k, "\": "), concat!(", \\\"", $k, "\\\": "))
    };
}

/// A writer for a part of a document whose layout is known when compiling (where every comma
/// goes, which keys come in which order): literals are copied as constants and no container
/// bookkeeping is done. `E`: the document is written embedded ([`PyJson::embedded`]). Made by
/// [`PyJson::fixed`]; what it writes must be one complete value.
#[derive(Debug)]
pub struct Fixed<'a, const E: bool> {
    out: &'a mut String,
}

impl<const E: bool> Fixed<'_, E> {
    /// Appends a literal: `plain`, or `embedded` (the same text escaped for embedding).
    #[inline(always)]
    pub fn lit(&mut self, plain: &'static str, embedded: &'static str) {
        self.out.push_str(if E { embedded } else { plain });
    }

    /// Appends text that is the same in both forms (no `"` or `\`).
    #[inline(always)]
    pub fn raw(&mut self, s: &'static str) {
        self.out.push_str(s);
    }

    /// A string value.
    #[inline]
    pub fn string(&mut self, s: &str) {
        escape::<E>(self.out, s);
    }

    /// A string or `null`.
    #[inline]
    pub fn opt_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.raw("null"),
        }
    }

    /// `true` / `false`.
    #[inline]
    pub fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }

    /// An integer.
    #[inline]
    pub fn int(&mut self, i: i64) {
        self.out.push_str(itoa::Buffer::new().format(i));
    }

    /// An integer as a string (`"29"`).
    #[inline]
    pub fn int_string(&mut self, i: i64) {
        self.lit("\"", "\\\"");
        self.int(i);
        self.lit("\"", "\\\"");
    }
}

/// Open containers as bits (no allocation per document): bit `i` of `items` says whether the
/// container at depth `i + 1` holds an item. Deeper than 64 levels, the extra levels are
/// counted and treated as holding items (no document written here nests that deep).
#[derive(Debug, Default, Clone, Copy)]
struct Stack {
    items: u64,
    depth: u32,
}

impl Stack {
    fn push(&mut self) {
        if self.depth < 64 {
            self.items &= !(1u64 << self.depth);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    /// Marks the innermost container as holding an item; whether it held one before. `None`
    /// outside any container.
    fn mark_item(&mut self) -> Option<bool> {
        let top = self.depth.checked_sub(1)?;
        if top >= 64 {
            return Some(true);
        }
        let bit = 1u64 << top;
        let had = self.items & bit != 0;
        self.items |= bit;
        Some(had)
    }
}

/// Python-`json.dumps`-compatible writer. Commas are inserted automatically.
#[derive(Debug, Default)]
pub struct PyJson {
    out: String,
    /// The open containers, innermost last: whether each already holds an item.
    stack: Stack,
    /// True right after `key()`: the next value belongs to that key.
    after_key: bool,
    /// Write the document as the content of a JSON string literal (see [`Self::embedded`]).
    embedded: bool,
}

impl PyJson {
    /// A writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            out: String::with_capacity(cap),
            stack: Stack::default(),
            after_key: false,
            embedded: false,
        }
    }

    /// A writer of the document as the content of a JSON string literal, without the enclosing
    /// quotes: exactly [`escape_json_content`] of what [`Self::with_capacity`]'s writer writes
    /// (every `"` as `\"`, every `\` as `\\`; the document is ASCII, ensure_ascii saw to that).
    pub fn embedded(cap: usize) -> Self {
        Self {
            embedded: true,
            ..Self::with_capacity(cap)
        }
    }

    /// The document written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn before_value(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if self.stack.mark_item() == Some(true) {
            self.out.push_str(", ");
        }
    }

    /// Starts `{`.
    pub fn begin_object(&mut self) -> &mut Self {
        self.before_value();
        self.out.push('{');
        self.stack.push();
        self
    }

    /// Ends `}`.
    pub fn end_object(&mut self) -> &mut Self {
        self.stack.pop();
        self.out.push('}');
        self
    }

    /// Starts `[`.
    pub fn begin_array(&mut self) -> &mut Self {
        self.before_value();
        self.out.push('[');
        self.stack.push();
        self
    }

    /// Ends `]`.
    pub fn end_array(&mut self) -> &mut Self {
        self.stack.pop();
        self.out.push(']');
        self
    }

    /// Writes an object key; the next call writes its value.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.before_value();
        escape_str(&mut self.out, k, self.embedded);
        self.out.push_str(": ");
        self.after_key = true;
        self
    }

    /// Writes one complete value whose layout is known when compiling with a [`Fixed`] writer:
    /// `plain` writes it into a plain document, `embedded` into an embedded one (the same code,
    /// `|w| self.write(w)` twice, instantiated for each form).
    pub fn fixed(
        &mut self,
        plain: impl FnOnce(&mut Fixed<'_, false>),
        embedded: impl FnOnce(&mut Fixed<'_, true>),
    ) {
        self.before_value();
        if self.embedded {
            embedded(&mut Fixed { out: &mut self.out });
        } else {
            plain(&mut Fixed { out: &mut self.out });
        }
    }

    /// A string value.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.before_value();
        escape_str(&mut self.out, s, self.embedded);
        self
    }

    /// A string or `null`.
    pub fn opt_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.string(s),
            None => {
                self.null();
                self
            }
        }
    }

    /// `true` / `false`.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.before_value();
        self.out.push_str(if b { "true" } else { "false" });
        self
    }

    /// An integer.
    pub fn int(&mut self, i: i64) -> &mut Self {
        self.before_value();
        self.out.push_str(itoa::Buffer::new().format(i));
        self
    }

    /// Empties the document to write another, keeping the buffer.
    pub fn clear(&mut self) {
        self.out.clear();
        self.stack.clear();
        self.after_key = false;
    }

    /// Appends `text`, a document written elsewhere: as it is, or escaped when this writer is
    /// [`Self::embedded`].
    pub fn push_document(&mut self, text: &str) {
        if self.embedded {
            let mut v = std::mem::take(&mut self.out).into_bytes();
            escape_json_content(&mut v, text);
            // Only ASCII escapes were added to UTF-8 text.
            self.out = String::from_utf8(v).unwrap_or_default();
        } else {
            self.out.push_str(text);
        }
    }

    /// The document written so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// `null`.
    pub fn null(&mut self) {
        self.before_value();
        self.out.push_str("null");
    }
}

/// Appends `s` as a JSON string literal with Python's `ensure_ascii=True` escaping: `"`, `\`
/// and the usual control characters by their short escapes, every other code point outside
/// printable ASCII (DEL included) as `\uXXXX` (astral ones as a surrogate pair). Runs of
/// printable ASCII, most of chat, are copied in one piece.
///
/// With `embedded`, that literal as the content of another JSON string: each
/// `"` of it written `\"`, each `\` written `\\`.
pub(crate) fn escape_str(out: &mut String, s: &str, embedded: bool) {
    if embedded {
        escape::<true>(out, s);
    } else {
        escape::<false>(out, s);
    }
}

/// [`escape_str`] with the form known when compiling (its quotes and backslashes are then
/// constants).
#[inline]
fn escape<const EMBEDDED: bool>(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let (quote, backslash) = if EMBEDDED {
        ("\\\"", "\\\\")
    } else {
        ("\"", "\\")
    };
    out.reserve(s.len() + 2);
    out.push_str(quote);
    let (mut start, mut i) = (0, 0);
    loop {
        i = plain_run(bytes, i);
        let Some(&b) = bytes.get(i) else { break };
        out.push_str(&s[start..i]);
        if b < 0x80 {
            // Python's escape: a backslash, then this.
            let tail = match b {
                b'"' => Some(quote),
                b'\\' => Some(backslash),
                b'\n' => Some("n"),
                b'\r' => Some("r"),
                b'\t' => Some("t"),
                0x08 => Some("b"),
                0x0c => Some("f"),
                _ => None,
            };
            match tail {
                Some(t) => {
                    out.push_str(backslash);
                    out.push_str(t);
                }
                None => push_unit(out, u16::from(b), backslash),
            }
            i += 1;
        } else {
            // A multi-byte UTF-8 sequence starts here (`s` is a str): one code point.
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                push_unit(out, *u, backslash);
            }
            i += c.len_utf8();
        }
        start = i;
    }
    out.push_str(&s[start..]);
    out.push_str(quote);
}

/// How serde_json escapes a byte inside a string: 0 = as is, `u` = `\\u00XX`, else the letter
/// after `\\`.
const SERDE_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` escaped as serde_json escapes the content of a string (without the quotes):
/// `"`, `\\` and control characters; everything else, non-ASCII included, as it is.
pub fn escape_json_content(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(s.len() + s.len() / 8);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = SERDE_ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if e == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether `b` is written as it is: printable ASCII but `"` and `\\`.
#[inline]
fn plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// The end of the run of [`plain`] bytes starting at `i`. Eight bytes at a time while none of
/// them can need escaping (SWAR: the classic "has a byte less than / equal to" tests, whose
/// rare false positives only hand a chunk to the exact byte loop), then byte by byte.
#[inline]
fn plain_run(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let special = (x & HIGH)
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
            | has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')))
            | has_zero(x ^ (ONES * 0x7f));
        if special != 0 {
            break;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| plain(b)) {
        i += 1;
    }
    i
}

/// `\\uXXXX` of one UTF-16 unit, lowercase hex as Python writes it (`backslash`: how a
/// backslash is written).
fn push_unit(out: &mut String, u: u16, backslash: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str(backslash);
    out.push('u');
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[usize::from((u >> shift) & 0xf)]));
    }
}

/// The straightforward escaper [`escape_str`] must equal (tests only).
#[cfg(test)]
pub(crate) fn escape_reference(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
