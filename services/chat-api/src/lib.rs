//! chat-api
