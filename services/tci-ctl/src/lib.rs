//! tci-ctl
