//! A chat row as read back, and its body: the stored `message` JSON, or that JSON rendered from
//! the raw line and room state (storage v3), or the raw line.

use tci_irc::record::{render_message_json, RecordError};
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
}
