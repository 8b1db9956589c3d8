//! streamer-ingestion
