//! The Helix HTTP server (`api.twitch.tv` / `id.twitch.tv` stand-in) and the `/sim/*`
//! admin endpoints used by tests.

pub(crate) mod limits;
pub(crate) mod streams;

use std::convert::Infallible;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::irc::hub::Control;
use crate::Shared;

pub(crate) use limits::HelixState;
use limits::RateInfo;

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

pub(crate) fn error_body(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "error": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "message": message,
    });
    json_response(status, &body)
}

/// Adds `Ratelimit-Limit`, `Ratelimit-Remaining` and `Ratelimit-Reset`.
pub(crate) fn with_rate(mut resp: Response, rate: Option<RateInfo>) -> Response {
    if let Some(r) = rate {
        let h = resp.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(r.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(r.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(r.reset));
    }
    resp
}

#[derive(Debug, Deserialize)]
struct SentQuery {
    #[serde(default)]
    ids: bool,
}

#[derive(Debug, Deserialize)]
struct FailQuery {
    #[serde(default = "one")]
    count: u64,
    /// Stream requests let through first (those that pass the rate limit).
    #[serde(default)]
    after: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyQuery {
    #[serde(default = "one")]
    count: u64,
}

fn one() -> u64 {
    1
}

async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let status = if r.is_not_found() {
        StatusCode::NOT_FOUND
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        StatusCode::METHOD_NOT_ALLOWED
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(error_body(status, ""))
}

/// Every route of the HTTP server.
pub(crate) fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let st = warp::any().map(move || shared.clone());
    let query = warp::query::<Vec<(String, String)>>();

    let token = warp::path!("oauth2" / "token")
        .and(warp::post())
        .and(st.clone())
        .and(query)
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map(
            |s: Arc<Shared>, q: Vec<(String, String)>, body: warp::hyper::body::Bytes| {
                streams::token(&s, &q, &body)
            },
        );
    let validate = warp::path!("oauth2" / "validate")
        .and(warp::get())
        .and(st.clone())
        .and(warp::header::headers_cloned())
        .map(|s: Arc<Shared>, h: HeaderMap| streams::validate(&s, &h));
    let helix_streams = warp::path!("helix" / "streams")
        .and(warp::get())
        .and(st.clone())
        .and(warp::header::headers_cloned())
        .and(query)
        .map(|s: Arc<Shared>, h: HeaderMap, q: Vec<(String, String)>| streams::streams(&s, &h, &q));

    let ok = |v: serde_json::Value| json_response(StatusCode::OK, &v);
    let reconnect = warp::path!("sim" / "reconnect")
        .and(warp::post())
        .and(st.clone())
        .map(move |s: Arc<Shared>| {
            ok(json!({"connections": s.hub.control_all(Control::Reconnect)}))
        });
    let drop_all = warp::path!("sim" / "drop")
        .and(warp::post())
        .and(st.clone())
        .map(move |s: Arc<Shared>| ok(json!({"connections": s.hub.control_all(Control::Drop)})));
    let pause = warp::path!("sim" / "pause")
        .and(warp::post())
        .and(st.clone())
        .map(move |s: Arc<Shared>| {
            s.set_paused(true);
            ok(json!({"paused": true}))
        });
    let resume = warp::path!("sim" / "resume")
        .and(warp::post())
        .and(st.clone())
        .map(move |s: Arc<Shared>| {
            s.set_paused(false);
            ok(json!({"paused": false}))
        });
    let set_rate = warp::path!("sim" / "rate")
        .and(warp::post())
        .and(st.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .map(move |s: Arc<Shared>, q: Vec<(String, String)>| {
            let value = q
                .iter()
                .find(|(k, _)| k == "per_second")
                .and_then(|(_, v)| v.parse::<f64>().ok());
            match value.map(|v| s.set_rate(v)) {
                Some(Ok(())) => ok(json!({"rate": s.rate()})),
                Some(Err(e)) => error_body(StatusCode::BAD_REQUEST, &e.to_string()),
                None => error_body(
                    StatusCode::BAD_REQUEST,
                    "per_second=N (messages per second, a number >= 0) is required",
                ),
            }
        });
    let get_rate = warp::path!("sim" / "rate")
        .and(warp::get())
        .and(st.clone())
        .map(move |s: Arc<Shared>| ok(json!({"rate": s.rate()})));
    let sent = warp::path!("sim" / "sent")
        .and(warp::get())
        .and(st.clone())
        .and(warp::query::<SentQuery>())
        .map(move |s: Arc<Shared>, q: SentQuery| {
            ok(serde_json::to_value(s.sent.report(q.ids)).unwrap_or_default())
        });
    let sent_reset = warp::path!("sim" / "sent")
        .and(warp::delete())
        .and(st.clone())
        .map(move |s: Arc<Shared>| {
            s.sent.reset();
            ok(json!({"reset": true}))
        });
    let live = warp::path!("sim" / "live")
        .and(warp::get())
        .and(st.clone())
        .map(move |s: Arc<Shared>| {
            let snap = s.world.snapshot();
            let data: Vec<_> = snap.streams.iter().map(|c| c.to_helix_json()).collect();
            ok(json!({"version": snap.version, "count": data.len(), "data": data}))
        });
    let churn = warp::path!("sim" / "churn")
        .and(warp::post())
        .and(st.clone())
        .map(move |s: Arc<Shared>| {
            let (offline, online) = s.world.churn(s.cfg.churn.max(0.01));
            ok(json!({"offline": offline, "online": online}))
        });
    let fail = warp::path!("sim" / "helix" / "fail")
        .and(warp::post())
        .and(st.clone())
        .and(warp::query::<FailQuery>())
        .map(move |s: Arc<Shared>, q: FailQuery| {
            s.helix.fail_after(q.after, q.count);
            ok(json!({"fail_next": q.count, "after": q.after}))
        });
    let empty = warp::path!("sim" / "helix" / "empty-bucket")
        .and(warp::post())
        .and(st.clone())
        .and(warp::query::<EmptyQuery>())
        .map(move |s: Arc<Shared>, q: EmptyQuery| {
            s.helix.empty_next(q.count);
            ok(json!({"empty_next": q.count}))
        });
    let expire = warp::path!("sim" / "helix" / "expire-tokens")
        .and(warp::post())
        .and(st.clone())
        .map(move |s: Arc<Shared>| ok(json!({"expired": s.helix.expire_all()})));
    let stats = warp::path!("sim" / "stats")
        .and(warp::get())
        .and(st)
        .map(move |s: Arc<Shared>| {
            ok(json!({
                "connections": s.hub.connections(),
                "joined_channels": s.hub.joined().len(),
                "dropped_frames": s.hub.dropped_frames(),
                "paused": s.is_paused(),
                "rate": s.rate(),
                "generated_lines": s.generated().0,
                "generated_privmsgs": s.generated().1,
                "joins_accepted": s.joins.accepted(),
                "joins_refused": s.joins.refused(),
                "joins_per_window": s.joins.limit(),
                "join_window_ms": s.joins.window().as_millis() as u64,
            }))
        });

    // Each route is boxed and the chain is folded one level at a time: a
    // fifteen-deep `Or<Or<...>>` type took minutes to compile and lint.
    let boxed = [
        validate.boxed(),
        helix_streams.boxed(),
        reconnect.boxed(),
        drop_all.boxed(),
        pause.boxed(),
        resume.boxed(),
        set_rate.boxed(),
        get_rate.boxed(),
        sent.boxed(),
        sent_reset.boxed(),
        live.boxed(),
        churn.boxed(),
        fail.boxed(),
        empty.boxed(),
        expire.boxed(),
        stats.boxed(),
    ];
    let mut all: BoxedFilter<(Response,)> = token.boxed();
    for route in boxed {
        all = all.or(route).unify().boxed();
    }
    all.recover(recover).unify()
}
