//! The public HTTP API (warp): routes, the rejection handler, per-request metrics.
//!
//! | route | handler |
//! |---|---|
//! | `GET /v1.0/{broadcaster_id}/chat` | [`handlers::chat`] |
//! | `GET /v1.0/{broadcaster_id}/users/{user_id}/chat` | [`handlers::user_chat`] |
//! | `GET /v1.0/streamers` | [`handlers::streamers`] |
//! | `GET /openapi.json` | the committed OpenAPI document |
//! | `GET /healthz` | `ok` |
//! | `GET /`, `GET /ui/{file}` | the log viewer ([`ui`]: a static page, script and style sheet) |
//!
//! Unknown paths answer 404, other methods 405, both with the JSON error body. The chat routes
//! of an opted-out channel, and the user log of an opted-out chatter, answer 403 (`opted_out`);
//! channel pages leave opted-out chatters out ([`crate::optout`]).

pub mod handlers;
mod render;
pub mod ui;

use std::{convert::Infallible, sync::Arc};

use warp::{reject::Rejection, reply::Response, Filter};

pub use self::handlers::ApiState;
use crate::{error::ApiError, metrics};

/// The OpenAPI 3 document of this API (committed as `services/chat-api/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Every route of the public API, with errors recovered into JSON bodies and metrics recorded.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let st = warp::any().map(move || state.clone());
    // Absent query string = empty (then `start` is reported missing, not the whole query).
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();

    let chat = warp::path!("v1.0" / String / "chat")
        .and(warp::get())
        .and(warp::path::full())
        .and(raw_query)
        .and(st.clone())
        .then(
            |b: String, path: warp::path::FullPath, q: String, s: Arc<ApiState>| async move {
                handlers::chat(&s, &b, None, path.as_str(), &q).await
            },
        );
    let user_chat = warp::path!("v1.0" / String / "users" / String / "chat")
        .and(warp::get())
        .and(warp::path::full())
        .and(raw_query)
        .and(st.clone())
        .then(|b: String, u: String, path: warp::path::FullPath, q: String, s: Arc<ApiState>| async move {
            handlers::chat(&s, &b, Some(&u), path.as_str(), &q).await
        });
    let streamers = warp::path!("v1.0" / "streamers")
        .and(warp::get())
        .and(raw_query)
        .and(st)
        .then(|q: String, s: Arc<ApiState>| async move { handlers::streamers(&s, &q).await });
    let openapi = warp::path!("openapi.json").and(warp::get()).map(|| {
        let mut r = Response::new(OPENAPI_JSON.into());
        r.headers_mut().insert(
            "content-type",
            warp::http::HeaderValue::from_static("application/json"),
        );
        r
    });
    let healthz = warp::path!("healthz").and(warp::get()).map(|| {
        let mut r = Response::new("ok".into());
        r.headers_mut().insert(
            "content-type",
            warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    });

    chat.or(user_chat)
        .unify()
        .or(streamers)
        .unify()
        .or(openapi)
        .unify()
        .or(healthz)
        .unify()
        .or(ui::routes())
        .unify()
        .recover(recover)
        .unify()
        .with(warp::log::custom(|info: warp::log::Info<'_>| {
            let route = metrics::route_label(info.path());
            let m = &metrics::METRICS;
            m.requests
                .with_label_values(&[route, info.status().as_str()])
                .inc();
            m.duration
                .with_label_values(&[route])
                .observe(info.elapsed().as_secs_f64());
        }))
}

/// Maps warp's own rejections (no route, wrong method) to the API's error body.
async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let err = if r.is_not_found() {
        ApiError::NotFound
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else {
        ApiError::InvalidParameter(format!("the request was refused: {r:?}"))
    };
    Ok(handlers::error_response(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cursor::CursorError, store::StoreError};

    #[test]
    fn the_openapi_document_documents_every_route_and_error_code() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        for p in [
            "/v1.0/{broadcaster_id}/chat",
            "/v1.0/{broadcaster_id}/users/{user_id}/chat",
            "/v1.0/streamers",
            "/openapi.json",
            "/healthz",
            "/",
        ] {
            assert!(doc["paths"][p]["get"].is_object(), "{p} undocumented");
        }
        let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["code"]["enum"]
            .as_array()
            .expect("code enum")
            .clone();
        let errors = [
            ApiError::MissingParameter("start"),
            ApiError::InvalidTimestamp {
                name: "start",
                value: String::new(),
            },
            ApiError::EndBeforeStart {
                start: String::new(),
                end: String::new(),
            },
            ApiError::InvalidLimit(String::new()),
            ApiError::InvalidBroadcasterId(String::new()),
            ApiError::InvalidUserId(String::new()),
            ApiError::InvalidParameter(String::new()),
            ApiError::InvalidCursor(CursorError::Forged),
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::OptedOut {
                scope: tci_schemas::OptOutScope::Channel,
                id: 1,
            },
            ApiError::Store(StoreError::NotConnected),
            ApiError::Store(StoreError::Timeout {
                what: "x",
                timeout: std::time::Duration::from_secs(1),
            }),
            ApiError::Store(StoreError::Decode { what: "x" }),
        ];
        for e in errors {
            assert!(
                codes.contains(&serde_json::Value::from(e.code())),
                "{} not in the OpenAPI enum",
                e.code()
            );
            let status = e.status().as_u16().to_string();
            if status != "500" {
                assert!(
                    doc["paths"]["/v1.0/{broadcaster_id}/chat"]["get"]["responses"][&status]
                        .is_object(),
                    "{status}"
                );
            }
        }
    }
}
