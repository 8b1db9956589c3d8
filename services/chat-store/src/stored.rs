//! A chat row as read back, and its body: the stored `message` JSON, or that JSON rendered from
//! the raw line and room state (storage v3), or the raw line.

use tci_irc::record::{push_log_text, render_message_json, write_log_text, RecordError};
use tci_schemas::PyJson;

use crate::cql::Body;

/// The columns of [`crate::cql::select_chat_page`], [`crate::cql::select_chat_by_keys`] and
/// [`crate::cql::select_chat_row`], in order: `(sent_ts, message_id, user_id, message,
/// raw_line, room_state, received_at)`.
pub type StoredChatTuple = (
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// A row of [`crate::cql::scan_chat`]: `broadcaster_id`, then a [`StoredChatTuple`]'s columns.
pub type ScanChatTuple = (
    i64,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// [`StoredChatTuple`] borrowed from the query's result (no copy of the line per row).
pub type StoredChatRefTuple<'a> = (
    i64,
    &'a str,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
);

/// One `chat_messages` row as read ([`StoredChatRefTuple`], or a [`StoredChatTuple`] borrowed):
/// `message` is set for rows that keep their JSON (written before storage v3, or not
/// renderable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredChatRef<'a> {
    pub sent_ts: i64,
    pub message_id: &'a str,
    pub user_id: Option<i64>,
    pub message: Option<&'a str>,
    pub raw_line: Option<&'a str>,
    pub room_state: Option<&'a str>,
    pub received_at: Option<i64>,
}

impl<'a> From<StoredChatRefTuple<'a>> for StoredChatRef<'a> {
    fn from(
        (sent_ts, message_id, user_id, message, raw_line, room_state, received_at): StoredChatRefTuple<'a>,
    ) -> Self {
        Self {
            sent_ts,
            message_id,
            user_id,
            message,
            raw_line,
            room_state,
            received_at,
        }
    }
}

impl<'a> From<&'a StoredChatTuple> for StoredChatRef<'a> {
    /// A row read into owned values (a stream of rows, a test), borrowed.
    fn from(t: &'a StoredChatTuple) -> Self {
        Self::from((
            t.0,
            t.1.as_str(),
            t.2,
            t.3.as_deref(),
            t.4.as_deref(),
            t.5.as_deref(),
            t.6,
        ))
    }
}

impl StoredChatRef<'_> {
    /// Writes the row's `message` JSON into `j` (cleared first): the stored JSON, else rendered
    /// from the raw line, the room state and the receive time.
    pub fn message_json(&self, broadcaster_id: i64, j: &mut PyJson) -> Result<(), BodyError> {
        j.clear();
        if let Some(m) = self.message {
            j.push_document(m);
            return Ok(());
        }
        match (self.raw_line, self.room_state) {
            (Some(line), Some(room)) => Ok(render_message_json(
                line,
                broadcaster_id,
                self.received_at.unwrap_or(self.sent_ts),
                room,
                j,
            )?),
            _ => Err(BodyError::Missing),
        }
    }

    /// The body a reader asked for: the `message` JSON (see [`Self::message_json`]), that JSON
    /// escaped for embedding in a JSON string ([`Body::EmbeddedMessage`]), or the raw line (empty
    /// for rows stored before lines were kept).
    pub fn body(&self, broadcaster_id: i64, body: Body) -> Result<String, BodyError> {
        // Room for a typical message JSON and its escapes: one allocation.
        let cap = self.raw_line.map_or(0, str::len) * 3;
        let mut j = match body {
            Body::RawLine => return Ok(self.raw_line.unwrap_or_default().to_owned()),
            Body::LogText => return self.log_text(),
            Body::Message => match self.message {
                Some(m) => return Ok(m.to_owned()),
                None => PyJson::with_capacity(cap),
            },
            Body::EmbeddedMessage => PyJson::embedded(cap),
        };
        self.message_json(broadcaster_id, &mut j)?;
        Ok(j.finish())
    }
}

impl StoredChatRef<'_> {
    /// [`Body::LogText`]: from the raw line when the row has one (no JSON rendered), else from
    /// the stored JSON's `room.name`, `user.name`, `text` and `is_me`.
    fn log_text(&self) -> Result<String, BodyError> {
        let mut out = String::with_capacity(self.raw_line.map_or(96, str::len));
        match (self.raw_line, self.message) {
            (Some(line), _) => write_log_text(line, &mut out)?,
            (None, Some(json)) => {
                let m: LogFields<'_> =
                    serde_json::from_str(json).map_err(|e| BodyError::Json(e.to_string()))?;
                push_log_text(&mut out, &m.room.name, &m.user.name, &m.text, m.is_me);
            }
            (None, None) => return Err(BodyError::Missing),
        }
        Ok(out)
    }
}

/// The fields of a stored `message` JSON that a chat log shows.
#[derive(serde::Deserialize)]
struct LogFields<'a> {
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
    #[serde(default)]
    is_me: bool,
    room: NameField<'a>,
    user: NameField<'a>,
}

#[derive(serde::Deserialize)]
struct NameField<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// Why a stored row has no `message` JSON to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Neither a JSON nor a raw line with its room state: the row was written by something else
    /// than chat-ingestor (or by hand).
    #[error("the row has neither a message JSON nor a raw line with its room state")]
    Missing,
    /// The raw line does not render (the ingestor checked it did when it stored the row).
    #[error("the stored raw line does not render: {0}")]
    Render(#[from] RecordError),
    /// The stored JSON does not have the fields a chat log shows.
    #[error("the stored message JSON is not readable: {0}")]
    Json(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(message: Option<&'a str>, raw_line: Option<&'a str>) -> StoredChatRef<'a> {
        StoredChatRef {
            sent_ts: 1,
            message_id: "m",
            user_id: Some(2),
            message,
            raw_line,
            room_state: Some("emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0"),
            received_at: Some(1),
        }
    }

    #[test]
    fn log_text_is_read_from_the_line_else_from_the_stored_json() {
        let text = |r: StoredChatRef<'_>| r.body(7, Body::LogText);
        assert_eq!(
            text(row(
                None,
                Some("@id=a :amy!amy@amy PRIVMSG #chan :hé \"q\"")
            ))
            .unwrap(),
            "#chan amy: hé \"q\""
        );
        assert_eq!(
            text(row(
                None,
                Some(":bob!bob@bob PRIVMSG #chan :\u{1}ACTION waves\u{1}")
            ))
            .unwrap(),
            "#chan bob: /me waves"
        );
        // A row that kept its JSON and has its line: the line is read, the JSON is not parsed.
        assert_eq!(
            text(row(Some("not json"), Some(":c!c@c PRIVMSG #x Cheer1"))).unwrap(),
            "#x c: Cheer1"
        );
        assert_eq!(
            text(row(
                Some(r#"{"text": "waves", "is_me": true, "room": {"name": "chan"}, "user": {"name": "amy"}}"#),
                None
            ))
            .unwrap(),
            "#chan amy: /me waves"
        );
        assert!(matches!(
            text(row(Some("not json"), None)),
            Err(BodyError::Json(_))
        ));
        assert!(matches!(text(row(None, None)), Err(BodyError::Missing)));
        assert!(matches!(
            text(row(None, Some(":tmi.twitch.tv PING"))),
            Err(BodyError::Render(_))
        ));
    }
}
