//! Turning Kafka records into domain records: Avro through the registry (schemas cached by id)
//! plus the checks the writer relies on.

use tci_common::registry::{AvroCodec, DecodeError};
use tci_schemas::{ChatMessage, ModerationEvent};

/// Which topic a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Chat,
    Moderation,
}

impl Source {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Source::Chat => "chat",
            Source::Moderation => "moderation",
        }
    }
}

pub use chat_store::Record;

/// Why a record cannot be turned into rows.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Decoded, but the writer cannot key it (no id, no channel).
    #[error("record of schema {id} is unusable: {reason}")]
    Invalid { id: u32, reason: &'static str },
}

impl RecordError {
    /// True when retrying later may succeed (registry down); false for poison records.
    pub fn is_retriable(&self) -> bool {
        matches!(self, RecordError::Decode(e) if e.is_retriable())
    }

    /// A stable short name for metrics labels and the dead-letter reason prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::Decode(e) => e.kind(),
            RecordError::Invalid { .. } => "invalid",
        }
    }
}

/// Decodes one value of `source`'s topic. Records the writer cannot key (no id, no channel) are
/// poison like a framing error: [`RecordError::Invalid`], not retriable.
pub async fn decode(
    codec: &AvroCodec,
    source: Source,
    payload: Option<&[u8]>,
) -> Result<Record, RecordError> {
    let id = payload
        .and_then(|p| tci_common::registry::framing_id(p).ok())
        .unwrap_or(0);
    let invalid = |reason: &'static str| RecordError::Invalid { id, reason };
    match source {
        Source::Chat => {
            let m: ChatMessage = codec.decode(payload).await?;
            if m.id.is_empty() {
                return Err(invalid("chat message has an empty id"));
            }
            if m.broadcaster_id <= 0 {
                return Err(invalid("chat message has no broadcaster_id"));
            }
            Ok(Record::Chat(Box::new(m)))
        }
        Source::Moderation => {
            let e: ModerationEvent = codec.decode(payload).await?;
            if e.event_id.is_empty() {
                return Err(invalid("moderation event has an empty event_id"));
            }
            if e.broadcaster_id <= 0 {
                return Err(invalid("moderation event has no broadcaster_id"));
            }
            Ok(Record::Moderation(Box::new(e)))
        }
    }
}
