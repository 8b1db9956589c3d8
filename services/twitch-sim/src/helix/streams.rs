//! `GET /helix/streams` and `POST /oauth2/token`.

use std::collections::HashSet;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::limits::{RateInfo, TokenCheck};
use super::{error_body, json_response, with_rate};
use crate::Shared;

/// Encodes a page offset as an opaque Twitch-looking cursor.
pub(crate) fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!(r#"{{"b":null,"a":{{"Offset":{offset}}}}}"#))
}

/// Decodes [`encode_cursor`] output (standard or URL-safe alphabet).
pub(crate) fn decode_cursor(cursor: &str) -> Option<usize> {
    let t = cursor.trim_end_matches('=');
    let raw = URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| STANDARD_NO_PAD.decode(t))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v.get("a")?.get("Offset")?.as_u64().map(|o| o as usize)
}

#[derive(Debug, Default)]
struct StreamsQuery {
    first: usize,
    offset: usize,
    user_ids: HashSet<String>,
    logins: HashSet<String>,
    games: HashSet<String>,
    languages: HashSet<String>,
}

/// A Helix 400 message: which parameter was malformed.
#[derive(Debug)]
struct BadRequest(String);

fn parse_query(q: &[(String, String)]) -> Result<StreamsQuery, BadRequest> {
    let mut out = StreamsQuery {
        first: 20,
        ..Default::default()
    };
    for (k, v) in q {
        match k.as_str() {
            "first" => {
                out.first = match v.parse::<usize>() {
                    Ok(n) if (1..=100).contains(&n) => n,
                    _ => return Err(BadRequest(format!("The parameter \"first\" was malformed: the value must be between 1 and 100, got {v:?}"))),
                }
            }
            "after" => {
                out.offset = decode_cursor(v).ok_or_else(|| BadRequest("Invalid cursor".to_string()))?;
            }
            "type" if v != "live" && v != "all" => {
                return Err(BadRequest(format!("The parameter \"type\" was malformed: {v:?}")));
            }
            "user_id" => {
                out.user_ids.insert(v.clone());
            }
            "user_login" => {
                out.logins.insert(v.to_ascii_lowercase());
            }
            "game_id" => {
                out.games.insert(v.clone());
            }
            "language" => {
                out.languages.insert(v.clone());
            }
            _ => {}
        }
    }
    if out.user_ids.len() + out.logins.len() > 100
        || out.games.len() > 100
        || out.languages.len() > 100
    {
        return Err(BadRequest(
            "Too many filter values; the maximum is 100".into(),
        ));
    }
    Ok(out)
}

fn unauthorized(message: &str) -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "Unauthorized", "status": 401, "message": message}),
    )
}

/// `GET /helix/streams`.
pub(crate) fn streams(
    shared: &Shared,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Response {
    let helix = &shared.helix;
    let client_id = headers
        .get("client-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bearer = headers
        .get(warp::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let known_client = client_id == shared.cfg.client_id;
    let peek = || known_client.then(|| helix.peek(client_id));
    if client_id.is_empty() {
        return unauthorized("Client-Id header required");
    }
    match bearer.map(|t| helix.check(t, client_id)) {
        Some(TokenCheck::Valid) => {}
        Some(TokenCheck::ClientMismatch) => {
            return with_rate(
                unauthorized("Client ID and OAuth token do not match"),
                peek(),
            )
        }
        _ => return with_rate(unauthorized("Invalid OAuth token"), peek()),
    }
    let rate: RateInfo = match helix.take(client_id) {
        Ok(r) => r,
        Err(r) => {
            let body = json!({"error": "Too Many Requests", "status": 429, "message": ""});
            return with_rate(json_response(StatusCode::TOO_MANY_REQUESTS, &body), Some(r));
        }
    };
    if helix.take_failure() {
        let body = json!({"error": "Service Unavailable", "status": 503, "message": ""});
        return with_rate(
            json_response(StatusCode::SERVICE_UNAVAILABLE, &body),
            Some(rate),
        );
    }
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(BadRequest(m)) => {
            return with_rate(error_body(StatusCode::BAD_REQUEST, &m), Some(rate))
        }
    };
    let snap = shared.world.snapshot();
    let users = !q.user_ids.is_empty() || !q.logins.is_empty();
    let matches = |c: &&std::sync::Arc<crate::world::Channel>| {
        (!users || q.user_ids.contains(&c.user_id) || q.logins.contains(&c.user_login))
            && (q.games.is_empty() || q.games.contains(&c.game_id))
            && (q.languages.is_empty() || q.languages.contains(&c.language))
    };
    let page: Vec<serde_json::Value> = snap
        .streams
        .iter()
        .filter(matches)
        .skip(q.offset)
        .take(q.first + 1)
        .map(|c| c.to_helix_json())
        .collect();
    let more = page.len() > q.first;
    let data: Vec<_> = page.into_iter().take(q.first).collect();
    let pagination = if more {
        json!({"cursor": encode_cursor(q.offset + q.first)})
    } else {
        json!({})
    };
    with_rate(
        json_response(
            StatusCode::OK,
            &json!({"data": data, "pagination": pagination}),
        ),
        Some(rate),
    )
}

/// `POST /oauth2/token` (client credentials; parameters in the form body or query).
pub(crate) fn token(shared: &Shared, query: &[(String, String)], body: &[u8]) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let get = |k: &str| {
        form.iter()
            .chain(query.iter())
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if get("client_id") != Some(shared.cfg.client_id.as_str()) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"status": 400, "message": "invalid client"}),
        );
    }
    if get("client_secret") != Some(shared.cfg.client_secret.as_str()) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"status": 403, "message": "invalid client secret"}),
        );
    }
    if get("grant_type") != Some("client_credentials") {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"status": 400, "message": "unsupported grant type"}),
        );
    }
    let token = shared.helix.issue(&shared.cfg.client_id);
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "expires_in": shared.cfg.token_lifetime.as_secs_f64().ceil() as u64,
            "token_type": "bearer",
        }),
    )
}

/// `GET /oauth2/validate` with `Authorization: OAuth <token>`.
pub(crate) fn validate(shared: &Shared, headers: &HeaderMap) -> Response {
    let token = headers
        .get(warp::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    match shared.helix.describe(token) {
        Some((client_id, left)) => json_response(
            StatusCode::OK,
            &json!({"client_id": client_id, "scopes": [], "expires_in": left}),
        ),
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"status": 401, "message": "invalid access token"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        for o in [0usize, 1, 100, 99_999] {
            assert_eq!(decode_cursor(&encode_cursor(o)), Some(o));
        }
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor(""), None);
    }

    #[test]
    fn query_validation() {
        let q = |pairs: &[(&str, &str)]| {
            parse_query(
                &pairs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(q(&[]).unwrap().first, 20);
        assert!(q(&[("first", "0")]).is_err());
        assert!(q(&[("first", "101")]).is_err());
        assert!(q(&[("first", "abc")]).is_err());
        assert!(q(&[("type", "rerun")]).is_err());
        assert!(q(&[("after", "%%%")]).is_err());
        let ok = q(&[
            ("first", "100"),
            ("user_id", "1"),
            ("user_id", "2"),
            ("language", "ja"),
        ])
        .unwrap();
        assert_eq!(
            (ok.first, ok.user_ids.len(), ok.languages.len()),
            (100, 2, 1)
        );
    }
}
