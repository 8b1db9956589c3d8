//! Helix API behaviour over real HTTP.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use twitch_sim::{Sim, SimConfig};

const ID: &str = "sim-client-id";
const SECRET: &str = "sim-client-secret";

async fn token(http: &Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("client_id", ID),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    v["access_token"].as_str().unwrap().to_string()
}

async fn streams(http: &Client, base: &str, tok: &str, query: &str) -> Response {
    http.get(format!("{base}/helix/streams?{query}"))
        .header("Client-Id", ID)
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
}

fn header(r: &Response, name: &str) -> u64 {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn token_flow_and_credential_errors() {
    let sim = Sim::start(SimConfig {
        channels: 10,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (http, base) = (Client::new(), sim.helix_url());
    let tok = token(&http, &base).await;
    assert_eq!(tok.len(), 30);

    let r = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("client_id", ID),
            ("client_secret", "wrong"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"status": 403, "message": "invalid client secret"})
    );

    let r = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("client_id", "nope"),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"status": 400, "message": "invalid client"})
    );

    // Missing / bogus token and missing client id are 401.
    let r = streams(&http, &base, "bogus", "").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"error": "Unauthorized", "status": 401, "message": "Invalid OAuth token"})
    );
    let r = http
        .get(format!("{base}/helix/streams"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        streams(&http, &base, &tok, "").await.status(),
        StatusCode::OK
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn paging_1000_channels_yields_each_once_sorted_by_viewers() {
    let sim = Sim::start(SimConfig {
        channels: 1000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (http, base) = (Client::new(), sim.helix_url());
    let tok = token(&http, &base).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("type=live&first=100&after={c}"),
            None => "type=live&first=100".to_string(),
        };
        let r = streams(&http, &base, &tok, &q).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        pages += 1;
        let data = v["data"].as_array().unwrap();
        assert!(data.len() <= 100);
        for s in data {
            assert_eq!(s["type"], "live");
            assert!(s["started_at"].as_str().unwrap().ends_with('Z'));
            assert!(s["user_id"]
                .as_str()
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_digit()));
            for k in [
                "id",
                "user_login",
                "user_name",
                "game_id",
                "game_name",
                "title",
                "language",
                "thumbnail_url",
            ] {
                assert!(s[k].is_string(), "{k} in {s}");
            }
            assert!(s["tags"].is_array() && s["is_mature"].is_boolean());
            seen.push((
                s["user_id"].as_str().unwrap().to_string(),
                s["viewer_count"].as_u64().unwrap(),
            ));
        }
        match v["pagination"].get("cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => {
                assert_eq!(v["pagination"], serde_json::json!({}));
                break;
            }
        }
        assert!(pages < 20, "pagination does not terminate");
    }
    assert_eq!(pages, 10);
    assert_eq!(seen.len(), 1000);
    let ids: HashSet<_> = seen.iter().map(|s| &s.0).collect();
    assert_eq!(ids.len(), 1000, "a channel appeared twice");
    assert!(
        seen.windows(2).all(|w| w[0].1 >= w[1].1),
        "not sorted by viewers desc"
    );
    let live: HashSet<String> = sim.live().into_iter().map(|c| c.user_id).collect();
    assert_eq!(live, seen.into_iter().map(|s| s.0).collect());

    // Default page size, filters and validation.
    let v: Value = streams(&http, &base, &tok, "").await.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 20);
    let some = &sim.live()[5];
    let v: Value = streams(
        &http,
        &base,
        &tok,
        &format!(
            "user_login={}&user_id={}",
            some.user_login,
            sim.live()[7].user_id
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let v: Value = streams(&http, &base, &tok, "language=ja&first=100")
        .await
        .json()
        .await
        .unwrap();
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["language"] == "ja"));
    for bad in ["first=0", "first=101", "first=x", "after=garbage!"] {
        let r = streams(&http, &base, &tok, bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["status"], 400);
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let sim = Sim::start(SimConfig {
        channels: 10,
        ratelimit_bucket: 5,
        ratelimit_refill: Duration::from_secs(600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (http, base) = (Client::new(), sim.helix_url());
    let tok = token(&http, &base).await;
    for expected in (0..5).rev() {
        let r = streams(&http, &base, &tok, "").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "ratelimit-limit"), 5);
        assert_eq!(header(&r, "ratelimit-remaining"), expected);
        assert!(header(&r, "ratelimit-reset") >= chrono::Utc::now().timestamp() as u64);
    }
    let r = streams(&http, &base, &tok, "").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "ratelimit-remaining"), 0);
    assert_eq!(header(&r, "ratelimit-limit"), 5);
    let reset = header(&r, "ratelimit-reset");
    let now = chrono::Utc::now().timestamp() as u64;
    assert!(
        reset > now + 500,
        "reset {reset} should be ~600s away from {now}"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_tokens_are_401() {
    let sim = Sim::start(SimConfig {
        channels: 10,
        token_lifetime: Duration::from_millis(600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (http, base) = (Client::new(), sim.helix_url());
    let tok = token(&http, &base).await;
    assert_eq!(
        streams(&http, &base, &tok, "").await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = streams(&http, &base, &tok, "").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("ratelimit-remaining"));

    // The admin hook invalidates fresh tokens too.
    let tok = token(&http, &base).await;
    assert_eq!(
        streams(&http, &base, &tok, "").await.status(),
        StatusCode::OK
    );
    let r = http
        .post(format!("{base}/sim/helix/expire-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        streams(&http, &base, &tok, "").await.status(),
        StatusCode::UNAUTHORIZED
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn injected_failures_then_recovery() {
    let sim = Sim::start(SimConfig {
        channels: 10,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (http, base) = (Client::new(), sim.helix_url());
    let tok = token(&http, &base).await;
    let r = http
        .post(format!("{base}/sim/helix/fail?count=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for _ in 0..2 {
        let r = streams(&http, &base, &tok, "").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key("ratelimit-limit"));
    }
    assert_eq!(
        streams(&http, &base, &tok, "").await.status(),
        StatusCode::OK
    );

    // One answered normally, then one 503, then normal again.
    let r = http
        .post(format!("{base}/sim/helix/fail?after=1&count=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(streams(&http, &base, &tok, "").await.status());
    }
    assert_eq!(
        got,
        [
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::OK
        ]
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_emptied_bucket_is_429_until_it_refills() {
    // 10 points refilling completely in 1 s: one point every 100 ms.
    let sim = Sim::start(SimConfig {
        channels: 10,
        ratelimit_bucket: 10,
        ratelimit_refill: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (http, base) = (Client::new(), sim.helix_url());
    let tok = token(&http, &base).await;
    let r = streams(&http, &base, &tok, "").await;
    assert_eq!(header(&r, "ratelimit-remaining"), 9);
    let r = http
        .post(format!("{base}/sim/helix/empty-bucket?count=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before_empty = std::time::Instant::now();
    let r = streams(&http, &base, &tok, "").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "ratelimit-remaining"), 0);
    let now = chrono::Utc::now().timestamp() as u64;
    assert!(
        (now..=now + 2).contains(&header(&r, "ratelimit-reset")),
        "an empty bucket refilling in 1 s resets within a second or two of {now}"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = streams(&http, &base, &tok, "").await;
    assert_eq!(r.status(), StatusCode::OK, "refilled from zero");
    // From zero at the 429, one point per 100 ms, one taken now: at most this many left (a
    // full bucket would say 9).
    let refilled = (before_empty.elapsed().as_millis() / 100) as u64;
    let remaining = header(&r, "ratelimit-remaining");
    assert!(
        remaining < refilled,
        "{remaining} left after {refilled} refilled"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_live_churn_and_pause() {
    let sim = Sim::start(SimConfig {
        channels: 200,
        churn: 0.1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (http, base) = (Client::new(), sim.helix_url());
    let before: Value = http
        .get(format!("{base}/sim/live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["count"], 200);
    let churned: Value = http
        .post(format!("{base}/sim/churn"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(churned["offline"].as_array().unwrap().len(), 20);
    let after: Value = http
        .get(format!("{base}/sim/live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["count"], 200);
    assert_eq!(after["version"], 1);
    let logins: HashSet<&str> = after["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user_login"].as_str().unwrap())
        .collect();
    for l in churned["offline"].as_array().unwrap() {
        assert!(!logins.contains(l.as_str().unwrap()));
    }
    for l in churned["online"].as_array().unwrap() {
        assert!(logins.contains(l.as_str().unwrap()));
    }
    assert_eq!(
        http.post(format!("{base}/sim/pause"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(sim.is_paused());
    assert_eq!(
        http.post(format!("{base}/sim/resume"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(!sim.is_paused());
    assert_eq!(
        http.get(format!("{base}/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    sim.shutdown().await.unwrap();
}
