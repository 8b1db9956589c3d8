//! `--replay FILE`: send recorded raw IRC lines instead of generated ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::hub::OutLine;
use super::proto::{command_of, tag};
use super::traffic::now_ms;
use crate::sent::SentRef;
use crate::Shared;

/// A recorded line with its channel, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    login: Arc<str>,
    line: String,
}

/// Parses a replay file: one raw IRC line per line; lines without a `#channel` are skipped.
pub(crate) fn parse_file(text: &str) -> Vec<Recorded> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_end_matches('\r');
            let cmd = command_of(l);
            if cmd.is_empty() {
                return None;
            }
            let after = l.split_once(&format!(" {cmd} "))?.1;
            let chan = after.split(' ').next()?.strip_prefix('#')?;
            if !super::proto::valid_login(chan) {
                return None;
            }
            Some(Recorded {
                login: Arc::from(chan),
                line: l.to_string(),
            })
        })
        .collect()
}

/// Rewrites `tmi-sent-ts` to the send time and returns the PRIVMSG id to record.
fn prepare(rec: &Recorded, ts: u64) -> OutLine {
    let mut text = rec.line.clone();
    let mut sent = None;
    if let Some(tags) = text
        .strip_prefix('@')
        .and_then(|r| r.split_once(' '))
        .map(|x| x.0)
    {
        let rewritten: Vec<String> = tags
            .split(';')
            .map(|kv| {
                if kv.starts_with("tmi-sent-ts=") {
                    format!("tmi-sent-ts={ts}")
                } else {
                    kv.to_string()
                }
            })
            .collect();
        if command_of(&text) == "PRIVMSG" {
            if let (Some(id), Some(room)) = (tag(tags, "id"), tag(tags, "room-id")) {
                if let Ok(u) = uuid::Uuid::parse_str(id) {
                    sent = Some(SentRef {
                        room_id: Arc::from(room),
                        id: u.as_u128(),
                        duplicate: false,
                    });
                }
            }
        }
        let rest = text[1 + tags.len()..].to_string();
        text = format!("@{}{rest}", rewritten.join(";"));
    }
    text.push_str("\r\n");
    OutLine {
        login: rec.login.clone(),
        text,
        sent,
        room_update: None,
    }
}

/// Replays `lines` once at the configured rate (changeable at run time), skipping lines whose channel nobody joined. Replay
/// does not advance while no channel at all is joined.
pub(crate) async fn run(
    shared: Arc<Shared>,
    lines: Vec<Recorded>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let cfg = &shared.cfg;
    let mut ticker = tokio::time::interval(cfg.tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut budget = 0.0f64;
    let mut next = 0usize;
    info!(lines = lines.len(), rate = shared.rate(), "replay started");
    while next < lines.len() {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last).min(Duration::from_secs(1));
        last = now;
        if shared.is_paused() || shared.hub.joined().is_empty() {
            budget = 0.0;
            continue;
        }
        budget += shared.rate() * elapsed.as_secs_f64();
        let n = budget.floor() as usize;
        budget -= n as f64;
        let ts = now_ms();
        let end = (next + n).min(lines.len());
        let batch: Vec<OutLine> = lines[next..end]
            .iter()
            .filter(|r| shared.hub.is_joined(&r.login))
            .map(|r| prepare(r, ts))
            .collect();
        next = end;
        let privmsgs = batch.iter().filter(|l| l.sent.is_some()).count();
        shared.count_generated(batch.len() as u64, privmsgs as u64);
        shared.hub.distribute(batch, cfg.max_lines_per_frame);
    }
    info!("replay finished");
    if lines.is_empty() {
        warn!("replay file had no channel lines");
    }
    token.cancelled().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rewrites() {
        let file = "@id=0a232bf9-2e6a-4bd4-85e3-c9800b68fedb;room-id=42;tmi-sent-ts=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hi\n\
                    PING :tmi.twitch.tv\n\
                    @room-id=42;slow=3 :tmi.twitch.tv ROOMSTATE #chan\n\
                    garbage\n";
        let recs = parse_file(file);
        assert_eq!(recs.len(), 2);
        let l = prepare(&recs[0], 99);
        assert!(l.text.starts_with(
            "@id=0a232bf9-2e6a-4bd4-85e3-c9800b68fedb;room-id=42;tmi-sent-ts=99 :a!a@"
        ));
        assert!(l.text.ends_with("PRIVMSG #chan :hi\r\n"));
        assert_eq!(&*l.sent.unwrap().room_id, "42");
        assert!(prepare(&recs[1], 5).sent.is_none());
    }
}
