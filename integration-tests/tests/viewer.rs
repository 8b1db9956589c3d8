//! The log viewer (`GET /` of chat-api) in a real browser. Demo chat (badges, colours, emotes,
//! a `/me`, a reply, a deleted message, and text and names that are HTML) is written with the
//! ingestor's own writer into this test's keyspace; chat-api runs in-process; headless Chromium
//! is driven over its DevTools protocol (a small client on tokio-tungstenite, below) with real
//! mouse clicks and wheel scrolls. What the page shows is compared with what the API returns for
//! the same range, page by page.
//!
//! Chromium is required: without it the test fails (`make test` installs it through
//! `dev/install-deps.sh`; `TCI_CHROMIUM` names another binary). A screenshot is written to
//! `$CARGO_TARGET_DIR/test-output/viewer/` and its path printed.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context};
use base64::Engine as _;
use chat_ingestor::decode::Record;
use futures::{SinkExt, StreamExt};
use integration_tests::TestEnv;
use serde_json::{json, Value};
use tci_schemas::{
    Badge, ChatMessage, Emote, EmotePosition, ModerationEvent, ModerationKind, Room, User,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const XSS_TEXT: &str = "<img src=x onerror=alert(1)>";
const XSS_NAME: &str = "\"><svg onload=alert(2)>";
/// Messages written; with pages of 20 that is 10 pages, more than the page keeps in its DOM (8),
/// so scrolling down drops the first pages and scrolling back up fetches them again.
const MESSAGES: usize = 200;
const PAGE: usize = 20;

// ------------------------------------------------------------------------------------------------
// A minimal Chrome DevTools Protocol client: one WebSocket to the browser, flat sessions.

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

struct Cdp {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: std::sync::atomic::AtomicU64,
    /// Every event received, in order (`{"method", "params", "sessionId"}`).
    events: Arc<Mutex<Vec<Value>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cdp {
    async fn connect(ws_url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .with_context(|| format!("connecting to the browser at {ws_url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<Message>();
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let reader = {
            let (pending, events, out) = (pending.clone(), events.clone(), out.clone());
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    if let Some(id) = v["id"].as_u64() {
                        let tx = pending.lock().expect("lock").remove(&id);
                        if let Some(tx) = tx {
                            let _ = tx.send(v);
                        }
                        continue;
                    }
                    // A dialog blocks the page until answered: record it and dismiss it, so a
                    // script that opened one fails the test instead of hanging it.
                    if v["method"] == "Page.javascriptDialogOpening" {
                        let mut cmd = json!({"id": 0, "method": "Page.handleJavaScriptDialog", "params": {"accept": false}});
                        cmd["sessionId"] = v["sessionId"].clone();
                        let _ = out.send(Message::text(cmd.to_string()));
                    }
                    events.lock().expect("lock").push(v);
                }
            })
        };
        Ok(Self {
            out,
            pending,
            next_id: std::sync::atomic::AtomicU64::new(1),
            events,
            tasks: vec![writer, reader],
        })
    }

    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cmd = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            cmd["sessionId"] = s.into();
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("lock").insert(id, tx);
        self.out
            .send(Message::text(cmd.to_string()))
            .map_err(|_| anyhow::anyhow!("the browser connection is closed"))?;
        let v = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .with_context(|| format!("{method}: no answer in 30 s"))?
            .with_context(|| format!("{method}: the browser connection closed"))?;
        if !v["error"].is_null() {
            bail!("{method}: {}", v["error"]);
        }
        Ok(v["result"].clone())
    }

    fn events_named(&self, method: &str) -> Vec<Value> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e["method"] == method)
            .cloned()
            .collect()
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Headless Chromium with its own profile directory; killed when dropped.
struct Browser {
    child: tokio::process::Child,
    profile: PathBuf,
    cdp: Cdp,
}

fn chromium_binary() -> anyhow::Result<String> {
    let candidates = std::env::var("TCI_CHROMIUM")
        .map(|c| vec![c])
        .unwrap_or_else(|_| {
            [
                "chromium",
                "chromium-browser",
                "google-chrome",
                "google-chrome-stable",
            ]
            .map(String::from)
            .to_vec()
        });
    for c in &candidates {
        let found = std::process::Command::new(c)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return Ok(c.clone());
        }
    }
    bail!(
        "headless Chromium is required for the log viewer test and none of {candidates:?} runs. \
         Install it with dev/install-deps.sh (Debian package `chromium`; `make test` runs it), \
         or point TCI_CHROMIUM at a Chromium/Chrome binary."
    )
}

impl Browser {
    async fn launch(out_dir: &Path) -> anyhow::Result<Self> {
        let bin = chromium_binary()?;
        let profile = out_dir.join(format!("profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)?;
        let child = tokio::process::Command::new(&bin)
            .args([
                "--headless",
                // The test may run as root in a container, where the sandbox cannot start; the
                // browser only ever opens this test's own local page.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                "--window-size=1280,720",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        // Chromium writes the port it picked and the browser's WebSocket path to this file.
        let port_file = profile.join("DevToolsActivePort");
        let mut ws_url = None;
        for _ in 0..150 {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                let mut lines = s.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    ws_url = Some(format!("ws://127.0.0.1:{port}{path}"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ws_url = ws_url.context("Chromium did not open its DevTools port within 15 s")?;
        let cdp = Cdp::connect(&ws_url).await?;
        Ok(Self {
            child,
            profile,
            cdp,
        })
    }

    /// A new tab, attached with a flat session, with the domains the test listens to enabled
    /// and `init_script` run before any script of every document.
    async fn new_page(&self, init_script: &str) -> anyhow::Result<Page<'_>> {
        let t = self
            .cdp
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target = t["targetId"].as_str().context("targetId")?;
        let a = self
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await?;
        let session = a["sessionId"].as_str().context("sessionId")?.to_string();
        let p = Page {
            cdp: &self.cdp,
            session,
        };
        p.call("Page.enable", json!({})).await?;
        p.call("Runtime.enable", json!({})).await?;
        p.call("Log.enable", json!({})).await?;
        p.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        p.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": init_script}),
        )
        .await?;
        Ok(p)
    }

    async fn close(mut self) {
        let _ = self.cdp.call(None, "Browser.close", json!({})).await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    /// Also when the test fails half-way: no browser left running, no profile left behind.
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

struct Page<'a> {
    cdp: &'a Cdp,
    session: String,
}

impl Page<'_> {
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value as JSON.
    async fn eval(&self, expr: &str) -> anyhow::Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if !r["exceptionDetails"].is_null() {
            bail!("{expr}: {}", r["exceptionDetails"]);
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until `expr` is truthy; fails after `secs` with `what` and the last value.
    async fn wait_for(&self, what: &str, expr: &str, secs: u64) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.eval(expr).await?;
            let truthy =
                !(v.is_null() || v == Value::Bool(false) || v == json!(0) || v == json!(""));
            if truthy {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                let status = self
                    .eval("document.getElementById('status')?.textContent")
                    .await;
                bail!("timed out waiting for {what} ({expr}); page status: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page has no request in flight (it counts them in `body[data-busy]`).
    async fn settle(&self) -> anyhow::Result<()> {
        // Let a scroll or click start its request first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.wait_for(
            "the page to finish loading",
            "document.body.dataset.busy === '0'",
            30,
        )
        .await?;
        Ok(())
    }

    /// The centre of the first element matching `selector`, scrolled into view.
    async fn centre(&self, selector: &str) -> anyhow::Result<(f64, f64)> {
        let sel = serde_json::to_string(selector)?;
        let v = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'nearest'}}); const r = e.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await?;
        match (v[0].as_f64(), v[1].as_f64()) {
            (Some(x), Some(y)) => Ok((x, y)),
            _ => bail!("no element {selector} to click"),
        }
    }

    /// A real mouse click (pressed, released) on the first element matching `selector`.
    async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let (x, y) = self.centre(selector).await?;
        for ty in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": ty, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await?;
        }
        Ok(())
    }

    /// Focuses `selector`, clears it and types `text` (as key input, so `input` events fire).
    async fn type_into(&self, selector: &str, text: &str) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); e.select(); }})()"
        ))
        .await?;
        self.call("Input.dispatchKeyEvent", json!({"type": "keyDown", "key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8}))
            .await?;
        self.call("Input.dispatchKeyEvent", json!({"type": "keyUp", "key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8}))
            .await?;
        self.call("Input.insertText", json!({"text": text})).await?;
        Ok(())
    }

    /// Mouse-wheel scroll over the chat log.
    async fn wheel(&self, dy: f64) -> anyhow::Result<()> {
        let (x, y) = self.centre("#log").await?;
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseWheel", "x": x, "y": y, "deltaX": 0, "deltaY": dy}),
        )
        .await?;
        Ok(())
    }

    /// Message ids in the log, top to bottom.
    async fn shown_ids(&self) -> anyhow::Result<Vec<String>> {
        let v = self
            .eval("[...document.querySelectorAll('#log .msg')].map(e => e.dataset.id)")
            .await?;
        Ok(serde_json::from_value(v)?)
    }

    async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().context("screenshot data")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// chat-api in-process, and the demo chat.

struct Api {
    base: String,
    http: reqwest::Client,
    token: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Api {
    async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        let mut cfg = chat_api::Config {
            common: env.cfg.clone(),
            ..Default::default()
        };
        cfg.http.addr = "127.0.0.1:0".into();
        cfg.common.admin.addr = "127.0.0.1:0".into();
        cfg.cursor.secret = Some("viewer-test-cursor-secret".into());
        let token = CancellationToken::new();
        let app = chat_api::App::build(cfg, token.clone()).await?;
        let base = format!("http://{}", app.http_addr());
        let task = tokio::spawn(app.run());
        Ok(Self {
            base,
            http: reqwest::Client::new(),
            token,
            task,
        })
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<reqwest::Response> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{path} {query:?}: {}", r.status());
        Ok(r)
    }

    /// Message ids of every JSON page of `path` over the range, page by page.
    async fn pages(
        &self,
        path: &str,
        range: &[(&str, &str)],
        limit: usize,
    ) -> anyhow::Result<Vec<Vec<String>>> {
        let limit = limit.to_string();
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let mut q = range.to_vec();
            q.extend([("limit", limit.as_str()), ("after", after.as_str())]);
            let v: Value = self.get(path, &q).await?.json().await?;
            out.push(
                v["messages"]
                    .as_array()
                    .context("messages")?
                    .iter()
                    .map(|m| m["message_id"].as_str().unwrap_or_default().to_string())
                    .collect(),
            );
            match v["cursor"].as_str() {
                Some(c) => after = c.to_string(),
                None => return Ok(out),
            }
            anyhow::ensure!(out.len() < 1000, "{path}: more than 1000 pages");
        }
    }

    /// The whole range in `format` (ndjson, text, raw), following `X-Cursor`.
    async fn download(
        &self,
        path: &str,
        range: &[(&str, &str)],
        format: &str,
    ) -> anyhow::Result<String> {
        let mut body = String::new();
        let mut after = String::new();
        loop {
            let mut q = range.to_vec();
            q.extend([
                ("limit", "100"),
                ("after", after.as_str()),
                ("format", format),
            ]);
            let r = self.get(path, &q).await?;
            let next = r
                .headers()
                .get("x-cursor")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            body.push_str(&r.text().await?);
            match next {
                Some(c) => after = c,
                None => return Ok(body),
            }
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.task.await??;
        Ok(())
    }
}

/// Writes records exactly as chat-ingestor does (its planner and writer).
async fn write_records(env: &TestEnv, records: &[Record]) -> anyhow::Result<()> {
    let session = tci_common::cassandra::connect_once(&env.cfg.cassandra).await?;
    let settings = chat_ingestor::IngestConfig::default().writer_settings();
    let max_rows = settings.max_rows_per_batch;
    let writer = chat_ingestor::writer::Writer::prepare(
        Arc::new(session),
        &env.cfg.cassandra.keyspace,
        settings,
    )
    .await?;
    let token = CancellationToken::new();
    for chunk in records.chunks(500) {
        let plan = chat_ingestor::writer::plan(chunk, max_rows);
        writer
            .write(&plan, &token)
            .await
            .map_err(|_| anyhow::anyhow!("the ingestor's writer gave up"))?;
    }
    Ok(())
}

const LINES: &[&str] = &[
    "that was such a clean play",
    "LUL what just happened",
    "gg",
    "can we get a replay of that?",
    "hello chat!",
    "first time catching the stream live, love it",
    "the music is so good today",
    "no way he hits that",
    "HE HIT IT",
    "chat is moving so fast nobody will know I like pineapple on pizza",
    "what rank is this?",
    "5 more minutes then bed I promise",
    "POGGERS",
    "that boss has way too much health",
    "is this the new patch?",
];
const USERS: &[(&str, &str, Option<&str>)] = &[
    ("pixelpanda", "PixelPanda", Some("#FF69B4")),
    ("nightowl_77", "nightowl_77", Some("#1E90FF")),
    ("kappa_king", "Kappa_King", Some("#9ACD32")),
    ("sleepyfox", "SleepyFox", None),
    ("modmarta", "ModMarta", Some("#00FF7F")),
    ("bytewizard", "ByteWizard", Some("#DAA520")),
    ("lurker3000", "lurker3000", Some("#0000FF")),
    ("caffeinated", "Caffeinated", Some("#FF4500")),
];

/// Demo chat of `channel` (id `b`), one message every 12 s from `t0`.
fn demo(b: i64, channel: &str, t0: i64) -> Vec<ChatMessage> {
    (0..MESSAGES)
        .map(|n| {
            let u = (n * 7 + n / 3) % USERS.len();
            let (login, display, color) = USERS[u];
            let uid = 40_000 + u;
            let mut badges = vec![];
            if login == "modmarta" {
                badges.push(Badge {
                    name: "moderator".into(),
                    version: "1".into(),
                });
            }
            if n % 3 == 0 {
                badges.push(Badge {
                    name: "subscriber".into(),
                    version: "12".into(),
                });
            }
            if login == "pixelpanda" {
                badges.push(Badge {
                    name: "vip".into(),
                    version: "1".into(),
                });
            }
            let mut m = ChatMessage {
                broadcaster_id: b,
                id: format!(
                    "{:08x}-5f1e-4c2b-9a7d-{n:012}",
                    (n as u32).wrapping_mul(2_654_435_761)
                ),
                sent_timestamp: t0 + n as i64 * 12_000,
                received_at: t0 + n as i64 * 12_000 + 40,
                text: format!("{} ({n})", LINES[n % LINES.len()]),
                room: Room {
                    name: channel.into(),
                    room_id: b.to_string(),
                    ..Room::default()
                },
                user: User {
                    name: login.into(),
                    display_name: display.into(),
                    color: color.map(String::from),
                    id: uid.to_string(),
                    badges: (!badges.is_empty()).then_some(badges),
                    badge_info: (n % 3 == 0).then(|| {
                        vec![Badge {
                            name: "subscriber".into(),
                            version: "14".into(),
                        }]
                    }),
                    subscriber: n % 3 == 0,
                    ..User::default()
                },
                ..ChatMessage::default()
            };
            match n {
                1 => {
                    m.text = "Kappa that was close Kappa".into();
                    m.emotes = Some(vec![Emote {
                        id: "25".into(),
                        positions: vec![
                            EmotePosition { start: 0, end: 4 },
                            EmotePosition { start: 21, end: 25 },
                        ],
                    }]);
                }
                2 => m.text = XSS_TEXT.into(),
                3 => {
                    m.user.display_name = XSS_NAME.into();
                    m.user.color = Some("red;background:url(http://example.com/x)".into());
                }
                4 => {
                    m.text = "dances in chat".into();
                    m.is_me = true;
                }
                5 => {
                    m.text = "@PixelPanda agreed, best run so far".into();
                    m.reply_parent_msg_id = Some("parent-1".into());
                    m.reply_parent_user_login = Some("pixelpanda".into());
                    m.reply_parent_display_name = Some("PixelPanda".into());
                    m.reply_parent_msg_body = Some("this is the best run so far".into());
                }
                6 => {
                    m.text = "Cheer100 take my bits".into();
                    m.bits = 100;
                }
                7 => m.text = "buy followers at spam dot example".into(),
                // Twitch counts emote positions in code points, not UTF-16 units.
                30 => {
                    m.text = "🐸 Kappa 🐸 hype".into();
                    m.emotes = Some(vec![Emote {
                        id: "25".into(),
                        positions: vec![EmotePosition { start: 2, end: 6 }],
                    }]);
                }
                _ => {}
            }
            m
        })
        .collect()
}

fn clearmsg(m: &ChatMessage) -> Record {
    Record::Moderation(Box::new(ModerationEvent {
        broadcaster_id: m.broadcaster_id,
        kind: ModerationKind::ClearMsg,
        event_id: format!("clearmsg-{}", m.id),
        sent_timestamp: m.sent_timestamp + 2_000,
        channel: m.room.name.clone(),
        target_user_id: None,
        target_user_login: Some(m.user.name.clone()),
        target_message_id: Some(m.id.clone()),
        ban_duration_seconds: None,
        msg_id: None,
        text: Some(m.text.clone()),
        system_msg: None,
        raw_tags: Vec::new(),
        received_at: None,
        raw_line: None,
    }))
}

fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-output").join("viewer")
}

/// Runs in the page before its own script: counts dialogs and CSP violations.
const INIT_SCRIPT: &str = r#"
window.__xss = 0;
window.__csp = [];
for (const f of ["alert", "confirm", "prompt"]) {
  const orig = window[f];
  window[f] = function (...a) { window.__xss++; return orig.apply(window, a); };
}
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"#;

fn concat(pages: &[Vec<String>], n: usize) -> Vec<String> {
    pages[..n].concat()
}

/// How many whole API pages `shown` is (it must be exactly their concatenation).
fn whole_pages(shown: &[String], pages: &[Vec<String>], what: &str) -> usize {
    let mut n = 0;
    while n < pages.len() && concat(pages, n).len() < shown.len() {
        n += 1;
    }
    assert_eq!(
        shown,
        concat(pages, n).as_slice(),
        "{what}: the log is not the API's first {n} page(s)"
    );
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_viewer_in_a_real_browser() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Fail early and clearly when there is no browser.
    chromium_binary()?;
    let env = TestEnv::new("viewer");
    let session = env.migrate().await?;
    let ks = &env.cfg.cassandra.keyspace;
    let b: i64 = 910_000_000 + i64::from(rand::random::<u16>());
    let channel = "cozycoder";
    let now = tci_common::now_ms();
    // 200 messages over the 40 minutes that ended 5 minutes ago: inside the default range.
    let t0 = now - 45 * 60_000;
    let msgs = demo(b, channel, t0);
    let deleted = msgs[7].clone();
    let mut records: Vec<Record> = msgs
        .iter()
        .map(|m| Record::Chat(Box::new(m.clone())))
        .collect();
    records.push(clearmsg(&deleted));
    write_records(&env, &records).await?;

    let ins = session
        .prepare(format!(
            "INSERT INTO {ks}.streamers (broadcaster_id, login, display_name, first_seen, last_seen_live, title, game_name, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .await?;
    let ts = scylla::value::CqlTimestamp;
    for (id, login, display, seen) in [
        (b, channel, "CozyCoder", Some(now - 20_000)),
        (b + 1, "speedrunsally", "SpeedrunSally", Some(now - 60_000)),
        (b + 2, "retro_rick", "retro_rick", Some(now - 86_400_000)),
    ] {
        session
            .execute_unpaged(
                &ins,
                (
                    id,
                    login,
                    display,
                    ts(now - 7 * 86_400_000),
                    seen.map(ts),
                    "Building a chat archive",
                    "Software and Game Development",
                    "en",
                ),
            )
            .await?;
    }

    let api = Api::start(&env).await?;

    // The page and its files: types and the security headers.
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/viewer.js", "text/javascript; charset=utf-8"),
        ("/ui/viewer.css", "text/css; charset=utf-8"),
    ] {
        let r = api.get(path, &[]).await?;
        let h = r.headers();
        assert_eq!(h["content-type"], ty, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let csp = h["content-security-policy"].to_str()?;
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("default-src 'self'")
                && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
    }

    // What the API says for the default range (the last hour; the page's range ends when it
    // loads, every message is older than that).
    let (start, end) = (iso(now - 3_600_000), iso(now + 60_000));
    let chat = format!("/v1.0/{b}/chat");
    let range = [("start", start.as_str()), ("end", end.as_str())];
    let pages = api.pages(&chat, &range, PAGE).await?;
    let total_pages = pages.iter().filter(|p| !p.is_empty()).count();
    assert_eq!(pages.concat().len(), MESSAGES);
    assert!(
        total_pages > 8,
        "the test needs more pages than the page keeps"
    );

    let out = output_dir();
    std::fs::create_dir_all(&out)?;
    let browser = Browser::launch(&out).await?;
    let result = drive(&browser, &api, b, channel, &msgs, &out).await;
    let events = browser.cdp.events.lock().expect("lock").clone();
    browser.close().await;
    api.stop().await?;
    env.drop_keyspace(&session).await;
    if let Err(e) = &result {
        let tail: Vec<&Value> = events.iter().rev().take(15).collect();
        eprintln!("last browser events: {tail:#?}");
        return Err(anyhow::anyhow!("{e:#}"));
    }
    eprintln!(
        "viewer test passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

async fn drive(
    browser: &Browser,
    api: &Api,
    b: i64,
    channel: &str,
    msgs: &[ChatMessage],
    out: &Path,
) -> anyhow::Result<()> {
    let page = browser.new_page(INIT_SCRIPT).await?;
    page.call("Page.navigate", json!({"url": format!("{}/", api.base)}))
        .await?;

    // The channel list comes from /v1.0/streamers: live ones first, marked.
    page.wait_for(
        "the channel list",
        "document.querySelectorAll('#channels button.channel').length >= 3",
        20,
    )
    .await?;
    let listed = page
        .eval("[...document.querySelectorAll('#channels button.channel')].map(b => [b.dataset.id, b.textContent])")
        .await?;
    let listed: Vec<(String, String)> = serde_json::from_value(listed)?;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(
        listed[0].0,
        b.to_string(),
        "live channels first: {listed:?}"
    );
    assert!(listed[0].1.contains("● live"), "{listed:?}");
    assert!(!listed[2].1.contains("live"), "{listed:?}");

    // Search by login, then pick it with a click; pages of 20.
    page.type_into("#channel-search", "cozy").await?;
    page.wait_for(
        "the search to narrow the list",
        "document.querySelectorAll('#channels button.channel').length === 1",
        10,
    )
    .await?;
    page.eval("document.getElementById('limit').value = '20'")
        .await?;
    page.click(&format!("#channels button.channel[data-id='{b}']"))
        .await?;
    page.wait_for(
        "the first messages",
        "document.querySelectorAll('#log .msg').length > 0",
        20,
    )
    .await?;
    page.settle().await?;
    assert_eq!(
        page.eval("document.getElementById('channel-name').textContent")
            .await?,
        format!("#{channel}")
    );

    // The log is whole API pages of the page's range (as many as fill the box), and more than
    // the box shows.
    let (start, end) = page_range(&page).await?;
    let range = [("start", start.as_str()), ("end", end.as_str())];
    let chat = format!("/v1.0/{b}/chat");
    let pages = &api.pages(&chat, &range, PAGE).await?;
    assert_eq!(
        pages.concat().len(),
        msgs.len(),
        "the default range is the last hour"
    );
    let shown = page.shown_ids().await?;
    let first_k = whole_pages(&shown, pages, "first load");
    assert!(
        first_k >= 1 && first_k < pages.len(),
        "{first_k} pages loaded at once"
    );
    assert_eq!(
        page.eval("(() => { const l = document.getElementById('log'); return l.scrollHeight > l.clientHeight; })()").await?,
        true,
        "the first pages overflow the log, so that scrolling loads more"
    );

    // Each message as a chat client shows it.
    let row = |id: &str, sel: &str| {
        format!("document.querySelector('#log .msg[data-id=\"{id}\"] {sel}')")
    };
    let xss = &msgs[2].id;
    assert_eq!(
        page.eval(&format!("{}.textContent", row(xss, ".text")))
            .await?,
        XSS_TEXT
    );
    assert_eq!(
        page.eval(&format!("{}.textContent", row(&msgs[3].id, ".name")))
            .await?,
        XSS_NAME
    );
    for sel in [
        "img",
        "svg",
        "script",
        "iframe",
        "object",
        "[onerror]",
        "[onload]",
    ] {
        assert_eq!(
            page.eval(&format!("document.querySelectorAll('#log {sel}').length"))
                .await?,
            0,
            "markup from chat became an element: {sel}"
        );
    }
    // The colour that is not a colour was not applied; a real one was (lightened when dark).
    let pg = &page;
    let colour = |id: &str| {
        let expr = format!("getComputedStyle({}).color", row(id, ".name"));
        async move { pg.eval(&expr).await }
    };
    let bad_colour = colour(&msgs[3].id).await?;
    assert!(
        bad_colour.as_str().is_some_and(|c| c.starts_with("rgb(")),
        "{bad_colour}"
    );
    let pink = msgs
        .iter()
        .find(|m| m.user.color.as_deref() == Some("#FF69B4"))
        .context("a pink name")?;
    assert_eq!(colour(&pink.id).await?, "rgb(255, 105, 180)");
    // Emote names are marked, at Twitch's positions.
    assert_eq!(
        page.eval(&format!("[...document.querySelectorAll('#log .msg[data-id=\"{}\"] .emote')].map(e => [e.textContent, e.dataset.emote])", msgs[1].id)).await?,
        json!([["Kappa", "25"], ["Kappa", "25"]])
    );
    assert_eq!(
        page.eval(&format!("{}.textContent", row(&msgs[1].id, ".text")))
            .await?,
        "Kappa that was close Kappa"
    );
    // Badges as text, time, /me, reply, bits.
    let badges = page.eval(&format!("[...document.querySelectorAll('#log .msg[data-id=\"{}\"] .badge')].map(b => b.textContent)", msgs[0].id)).await?;
    assert!(
        badges
            .as_array()
            .is_some_and(|b| b.iter().any(|x| x == "subscriber 14")),
        "{badges}"
    );
    assert!(page
        .eval(&format!("{}.textContent", row(&msgs[0].id, "time")))
        .await?
        .as_str()
        .is_some_and(|t| t.len() == 8));
    assert_eq!(
        page.eval(&format!(
            "{}.classList.contains('me')",
            row(&msgs[4].id, "")
        ))
        .await?,
        true
    );
    assert!(page
        .eval(&format!("{}.textContent", row(&msgs[5].id, ".reply")))
        .await?
        .as_str()
        .is_some_and(|t| t.contains("@PixelPanda: this is the best run so far")));
    assert_eq!(
        page.eval(&format!("{}.textContent", row(&msgs[6].id, ".bits")))
            .await?,
        "100 bits"
    );
    // The deleted message is shown struck through.
    let del = &msgs[7].id;
    assert_eq!(
        page.eval(&format!("{}.classList.contains('deleted')", row(del, "")))
            .await?,
        true
    );
    assert!(page
        .eval(&format!(
            "getComputedStyle({}).textDecorationLine",
            row(del, ".text")
        ))
        .await?
        .as_str()
        .is_some_and(|d| d.contains("line-through")));
    assert_eq!(
        page.eval("document.querySelectorAll('#log .msg.deleted').length")
            .await?,
        1
    );

    // A day line only where the day changes (each page starts with one).
    let days = page
        .eval("[...document.querySelectorAll('#log .day')].filter(d => !d.hidden).map(d => d.textContent)")
        .await?;
    let days: Vec<String> = serde_json::from_value(days)?;
    assert!(
        !days.is_empty() && days.windows(2).all(|w| w[0] != w[1]),
        "{days:?}"
    );

    // Clearing the search lists every channel again, the chosen one marked.
    page.type_into("#channel-search", "").await?;
    page.wait_for(
        "the whole channel list",
        "document.querySelectorAll('#channels button.channel').length === 3",
        10,
    )
    .await?;
    assert_eq!(
        page.eval("[...document.querySelectorAll('#channels button[aria-pressed=\"true\"]')].map(b => b.dataset.id)").await?,
        json!([b.to_string()])
    );

    let shot = out.join(format!("viewer-{}.png", std::process::id()));
    page.screenshot(&shot).await?;
    eprintln!("screenshot: {}", shot.display());

    // Scrolling down loads the following pages with the API's cursors, exactly the API's pages.
    page.wheel(600.0).await?;
    page.wait_for(
        "the next page after scrolling",
        &format!(
            "document.querySelectorAll('#log .msg').length > {}",
            shown.len()
        ),
        20,
    )
    .await?;
    page.settle().await?;
    let shown2 = page.shown_ids().await?;
    let k2 = whole_pages(&shown2, pages, "after one scroll");
    assert_eq!(
        page.eval(&format!("[...document.querySelectorAll('#log .msg[data-id=\"{}\"] .emote')].map(e => e.textContent)", msgs[30].id)).await?,
        json!(["Kappa"]),
        "emote positions are code points"
    );
    assert!(k2 > first_k, "scrolling loaded no page");
    assert_eq!(
        &shown2[shown.len()..shown.len() + PAGE],
        pages[first_k].as_slice()
    );

    // To the end: the first pages leave the DOM (it keeps 8) ...
    for _ in 0..60 {
        if page.eval("document.querySelector('#log > .edge:last-child')?.textContent === 'end of the range'").await? == true {
            break;
        }
        page.wheel(3000.0).await?;
        page.settle().await?;
    }
    let at_end = page.shown_ids().await?;
    assert_eq!(
        at_end.last(),
        pages.concat().last(),
        "the last message is shown at the end"
    );
    let kept = at_end.len();
    let all = pages.concat();
    assert_eq!(
        at_end.as_slice(),
        &all[all.len() - kept..],
        "the log is the tail of the range"
    );
    assert!(kept < all.len(), "no page was dropped from the top");
    // ... and scrolling back up fetches them again with their cursors.
    for _ in 0..60 {
        if page
            .eval("document.querySelector('#log > .edge')?.textContent === 'start of the range'")
            .await?
            == true
        {
            break;
        }
        page.wheel(-3000.0).await?;
        page.settle().await?;
    }
    let back = page.shown_ids().await?;
    assert_eq!(
        back.first(),
        all.first(),
        "scrolling back up reaches the first message"
    );
    whole_pages(&back, pages, "after scrolling back up");

    // Downloads: the whole range as NDJSON and text, byte for byte what the API serves.
    let dl = out.join(format!("downloads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dl);
    std::fs::create_dir_all(&dl)?;
    browser
        .cdp
        .call(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dl.to_string_lossy(), "eventsEnabled": true}),
        )
        .await?;
    for (format, ext) in [("ndjson", ".ndjson"), ("text", ".txt")] {
        page.click(&format!("#downloads button[data-format='{format}']"))
            .await?;
        let file = wait_for_file(&dl, ext).await?;
        let got = std::fs::read_to_string(&file)?;
        let want = api.download(&chat, &range, format).await?;
        assert_eq!(got.lines().count(), msgs.len(), "{format}");
        assert!(
            got == want,
            "{format}: the download differs from the API's pages"
        );
        eprintln!(
            "download {format}: {} bytes, the same as the API's pages",
            got.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dl);

    // hide deleted: the deleted message is gone, the pages are the API's with hide_deleted.
    page.click("#hide-deleted").await?;
    page.click("#show").await?;
    page.settle().await?;
    let hidden = page.shown_ids().await?;
    let mut q = range.to_vec();
    q.push(("hide_deleted", "true"));
    let hidden_pages = api.pages(&chat, &q, PAGE).await?;
    whole_pages(&hidden, &hidden_pages, "hide_deleted");
    assert!(!hidden.contains(del));

    // One user: clicking a name shows the user log of that user (the user route's pages).
    let user = &msgs[0].user;
    page.click(&format!("#log .msg[data-id=\"{}\"] .name", msgs[0].id))
        .await?;
    page.wait_for(
        "the user filter",
        &format!("document.getElementById('user').value === '{}'", user.id),
        10,
    )
    .await?;
    page.settle().await?;
    let mine = page.shown_ids().await?;
    let user_pages = api
        .pages(&format!("/v1.0/{b}/users/{}/chat", user.id), &q, PAGE)
        .await?;
    whole_pages(&mine, &user_pages, "user log");
    assert!(!mine.is_empty());
    let names = page
        .eval("[...new Set([...document.querySelectorAll('#log .msg .name')].map(n => n.textContent))]")
        .await?;
    assert_eq!(names, json!([user.display_name]));

    // Nothing ran that should not have: no dialog, no CSP violation, no script error.
    assert_eq!(
        page.eval("window.__xss").await?,
        0,
        "a dialog function was called"
    );
    assert!(
        browser
            .cdp
            .events_named("Page.javascriptDialogOpening")
            .is_empty(),
        "a dialog opened"
    );
    assert_eq!(
        page.eval("window.__csp").await?,
        json!([]),
        "the page broke its own CSP"
    );
    let exceptions = browser.cdp.events_named("Runtime.exceptionThrown");
    assert!(exceptions.is_empty(), "script errors: {exceptions:#?}");
    let errors: Vec<Value> = browser
        .cdp
        .events_named("Log.entryAdded")
        .into_iter()
        .filter(|e| e["params"]["entry"]["level"] == "error")
        .collect();
    assert!(errors.is_empty(), "errors in the browser log: {errors:#?}");
    Ok(())
}

/// The range the page queries (from its URL hash, where it keeps the query).
async fn page_range(page: &Page<'_>) -> anyhow::Result<(String, String)> {
    let v = page
        .eval("(() => { const h = new URLSearchParams(location.hash.slice(1)); return [h.get('start'), h.get('end')]; })()")
        .await?;
    Ok(serde_json::from_value(v)?)
}

/// The first complete file in `dir` whose name ends with `ext` (Chromium renames a download
/// when it is complete).
async fn wait_for_file(dir: &Path, ext: &str) -> anyhow::Result<PathBuf> {
    for _ in 0..200 {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.to_string_lossy().ends_with(ext) {
                return Ok(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no {ext} download in {} after 20 s", dir.display())
}
