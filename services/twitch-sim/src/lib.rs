//! twitch-sim
