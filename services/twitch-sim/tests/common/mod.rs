//! Shared test helpers: a tiny IRC-over-WebSocket client.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a read attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Timeout,
    CloseFrame,
    Eof,
    Error,
}

pub struct Client {
    pub ws: Ws,
    pub buf: VecDeque<String>,
    pub frames: usize,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Client {
            ws,
            buf: VecDeque::new(),
            frames: 0,
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.ws
            .send(Message::text(format!("{line}\r\n")))
            .await
            .expect("ws send");
    }

    /// Next line, or how the stream ended.
    pub async fn line(&mut self, wait: Duration) -> Result<String, Ended> {
        loop {
            if let Some(l) = self.buf.pop_front() {
                return Ok(l);
            }
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return Err(Ended::Timeout),
                Ok(None) => return Err(Ended::Eof),
                Ok(Some(Err(_))) => return Err(Ended::Error),
                Ok(Some(Ok(Message::Close(_)))) => return Err(Ended::CloseFrame),
                Ok(Some(Ok(Message::Text(t)))) => {
                    self.frames += 1;
                    assert!(t.ends_with("\r\n"), "frame not CRLF-terminated: {t:?}");
                    for l in t.split("\r\n").filter(|l| !l.is_empty()) {
                        self.buf.push_back(l.to_string());
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Skips lines until one satisfies `pred`; panics after `wait` of total time.
    pub async fn expect(
        &mut self,
        wait: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.line(left).await {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("waiting for {what}: {e:?}"),
            }
        }
    }

    /// Anonymous login with all capabilities.
    pub async fn login(&mut self) {
        self.send("CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership")
            .await;
        self.send("PASS oauth:whatever").await;
        self.send("NICK justinfan12345").await;
        self.expect(secs(5), "376", |l| l.contains(" 376 ")).await;
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Value of a tag in a raw line.
pub fn tag<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let tags = line.strip_prefix('@')?.split_once(' ')?.0;
    tags.split(';').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

/// The command of a raw line.
pub fn command(line: &str) -> &str {
    let mut rest = line;
    if rest.starts_with('@') {
        rest = rest.split_once(' ').map_or("", |x| x.1);
    }
    if rest.starts_with(':') {
        rest = rest.split_once(' ').map_or("", |x| x.1);
    }
    rest.split(' ').next().unwrap_or("")
}
