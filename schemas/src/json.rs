//! A minimal JSON writer that reproduces Python's `json.dumps` defaults byte for byte:
//! `", "` between items, `": "` after keys, and `ensure_ascii` escaping (every non-ASCII code
//! point as `\uXXXX`, astral ones as a surrogate pair). The original service stored messages in
//! this format; the API keeps serving it unchanged.

/// Python-`json.dumps`-compatible writer. Commas are inserted automatically.
#[derive(Debug, Default)]
pub struct PyJson {
    out: String,
    /// One entry per open container: whether it already holds an item.
    stack: Vec<bool>,
    /// True right after `key()`: the next value belongs to that key.
    after_key: bool,
}

impl PyJson {
    /// A writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            out: String::with_capacity(cap),
            stack: Vec::with_capacity(4),
            after_key: false,
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
        if let Some(has_items) = self.stack.last_mut() {
            if *has_items {
                self.out.push_str(", ");
            }
            *has_items = true;
        }
    }

    /// Starts `{`.
    pub fn begin_object(&mut self) -> &mut Self {
        self.before_value();
        self.out.push('{');
        self.stack.push(false);
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
        self.stack.push(false);
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
        escape_into(&mut self.out, k);
        self.out.push_str(": ");
        self.after_key = true;
        self
    }

    /// A string value.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.before_value();
        escape_into(&mut self.out, s);
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

    /// An integer as a string (`"29"`).
    pub fn int_string(&mut self, i: i64) -> &mut Self {
        self.before_value();
        self.out.push('"');
        self.out.push_str(itoa::Buffer::new().format(i));
        self.out.push('"');
        self
    }

    /// Empties the document to write another, keeping the buffer.
    pub fn clear(&mut self) {
        self.out.clear();
        self.stack.clear();
        self.after_key = false;
    }

    /// Appends `text` as it is (a document written elsewhere).
    pub fn push_raw(&mut self, text: &str) {
        self.out.push_str(text);
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

/// Appends `s` as a JSON string literal with Python's `ensure_ascii=True` escaping: `"`, `\\`
/// and the usual control characters by their short escapes, every other code point outside
/// printable ASCII (DEL included) as `\\uXXXX` (astral ones as a surrogate pair). Runs of
/// printable ASCII, most of chat, are copied in one piece.
pub fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(s.len() + 2);
    out.push('"');
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        if b < 0x80 {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                _ => push_unit(out, u16::from(b)),
            }
            i += 1;
        } else {
            // A multi-byte UTF-8 sequence starts here (`s` is a str): one code point.
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                push_unit(out, *u);
            }
            i += c.len_utf8();
        }
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `\\uXXXX` of one UTF-16 unit, lowercase hex as Python writes it.
fn push_unit(out: &mut String, u: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[usize::from((u >> shift) & 0xf)]));
    }
}

/// The straightforward escaper [`escape_into`] must equal (tests only).
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
