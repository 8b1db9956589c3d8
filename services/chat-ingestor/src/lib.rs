//! chat-ingestor
