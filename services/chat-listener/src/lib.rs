//! chat-listener
