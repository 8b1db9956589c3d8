//! streamer-listener
