//! Request handlers. Order of work in every handler: path ids, query parameters, cursor, and
//! only then Cassandra, so bad input is refused with a 400 before any query is issued.

use std::sync::Arc;

use tci_schemas::{OptOutScope, OptOutSet};
use tokio::sync::OnceCell;
use tracing::{debug, field, info_span, Instrument, Span};
use warp::reply::Response;

use super::render;
use crate::{
    config::QueryConfig,
    cursor::{Binding, CursorCodec, CursorError, Position, RouteKind},
    error::ApiError,
    metrics::METRICS,
    optout::{self, OptOutCache},
    params::{self, Format, QueryPairs},
    store::{self, cassandra::Db, Body, ChatRequest, Scope, StoreError, StreamerRow},
};

/// What every handler shares.
#[derive(Debug)]
pub struct ApiState {
    /// Set once Cassandra is connected and the statements are prepared.
    pub db: Arc<OnceCell<Db>>,
    pub codec: CursorCodec,
    pub query: QueryConfig,
    /// `streamers.live_window` in ms.
    pub live_window_ms: i64,
    /// Opted-out chatters and channels ([`crate::optout`]).
    pub optouts: OptOutCache,
}

impl ApiState {
    fn db(&self) -> Result<&Db, ApiError> {
        self.db
            .get()
            .ok_or(ApiError::Store(StoreError::NotConnected))
    }

    /// The opt-out set; 503 until it was read once (nothing is served on a guess).
    fn optouts(&self) -> Result<Arc<OptOutSet>, ApiError> {
        self.optouts
            .get()
            .ok_or(ApiError::Store(StoreError::NotConnected))
    }
}

/// Renders an error, counting and logging it.
pub fn error_response(e: ApiError) -> Response {
    let status = e.status();
    if status.is_client_error() {
        METRICS.bad_requests.with_label_values(&[e.code()]).inc();
        debug!(code = e.code(), error = %e, "request refused");
    } else {
        tracing::warn!(code = e.code(), error = %e, status = status.as_u16(), "request failed");
    }
    e.into_response()
}

/// `GET /v1.0/{broadcaster_id}/chat` and, with `user`, `GET /v1.0/{broadcaster_id}/users/{user_id}/chat`.
pub async fn chat(
    state: &ApiState,
    broadcaster: &str,
    user: Option<&str>,
    path: &str,
    raw_query: &str,
) -> Response {
    let route = if user.is_some() { "user_chat" } else { "chat" };
    let span = info_span!(
        "request",
        route,
        broadcaster_id = field::Empty,
        user_id = field::Empty
    );
    async move {
        // Boxed: keeps the route filter's future type shallow enough for the compiler.
        match Box::pin(chat_inner(state, broadcaster, user, path, raw_query)).await {
            Ok(r) => r,
            Err(e) => error_response(e),
        }
    }
    .instrument(span)
    .await
}

async fn chat_inner(
    state: &ApiState,
    broadcaster: &str,
    user: Option<&str>,
    path: &str,
    raw_query: &str,
) -> Result<Response, ApiError> {
    let broadcaster_id = params::broadcaster_id(broadcaster)?;
    Span::current().record("broadcaster_id", broadcaster_id);
    let user_id = user.map(params::user_id).transpose()?;
    if let Some(u) = user_id {
        Span::current().record("user_id", u);
    }
    let q = QueryPairs::parse(raw_query);
    let p = params::chat(&q)?;
    let (kind, scope) = match user_id {
        None => (RouteKind::Chat, Scope::Channel { broadcaster_id }),
        Some(user_id) => (
            RouteKind::UserChat,
            Scope::User {
                broadcaster_id,
                user_id,
            },
        ),
    };
    let binding = Binding {
        kind,
        broadcaster_id,
        user_id: user_id.unwrap_or(0),
        start_ms: p.start_ms,
        end_ms: p.end_ms,
        filter: 0,
    };
    let resume = p
        .after
        .as_deref()
        .map(|c| verify_chat_cursor(&state.codec, &binding, scope, c))
        .transpose()?;
    let optouts = state.optouts()?;
    if let Some((scope, id)) = optout::refused(&optouts, broadcaster_id, user_id) {
        return Err(ApiError::OptedOut { scope, id });
    }
    let db = state.db()?;
    let req = ChatRequest {
        scope,
        body: match p.format {
            Format::Raw => Body::RawLine,
            // Their writers embed the message JSON as a string: rendered escaped, in one pass.
            Format::Json | Format::Ndjson => Body::EmbeddedMessage,
            Format::Text => Body::LogText,
        },
        start_ms: p.start_ms,
        end_ms: p.end_ms,
        limit: p.limit,
        resume,
        hide_deleted: p.hide_deleted,
        max_queries: state.query.max_queries_per_request,
        index_batch: state.query.bucket_index_batch,
    };
    let mut page = store::read_chat(db, &req).await?;
    let left_out = optout::filter_rows(&optouts, broadcaster_id, &mut page.rows);
    if left_out > 0 {
        METRICS.optout_filtered.inc_by(left_out as u64);
    }
    METRICS
        .page_queries
        .with_label_values(&[if user_id.is_some() {
            "user_chat"
        } else {
            "chat"
        }])
        .observe(f64::from(page.queries));
    let cursor = page
        .next
        .as_ref()
        .map(|pos| state.codec.encode(&binding, pos));
    Ok(match p.format {
        Format::Json => render::chat_json(broadcaster_id, &page.rows, cursor.as_deref()),
        Format::Ndjson => {
            render::chat_ndjson(broadcaster_id, &page.rows, cursor.as_deref(), path, &q)
        }
        Format::Text => render::chat_text(&page.rows, cursor.as_deref(), path, &q),
        Format::Raw => render::chat_raw(&page.rows, cursor.as_deref(), path, &q),
    })
}

fn verify_chat_cursor(
    codec: &CursorCodec,
    binding: &Binding,
    scope: Scope,
    cursor: &str,
) -> Result<Position, ApiError> {
    let pos = codec.decode(binding, cursor)?;
    let (first, last) = (
        scope.bucket_of(binding.start_ms),
        scope.bucket_of(binding.end_ms),
    );
    if pos.bucket < first || pos.bucket > last {
        return Err(CursorError::OutOfRange.into());
    }
    Ok(pos)
}

/// `GET /v1.0/streamers`.
pub async fn streamers(state: &ApiState, raw_query: &str) -> Response {
    let span = info_span!("request", route = "streamers");
    async move {
        match streamers_inner(state, raw_query).await {
            Ok(r) => r,
            Err(e) => error_response(e),
        }
    }
    .instrument(span)
    .await
}

async fn streamers_inner(state: &ApiState, raw_query: &str) -> Result<Response, ApiError> {
    let p = params::streamers(&QueryPairs::parse(raw_query))?;
    let binding = Binding {
        kind: RouteKind::Streamers,
        broadcaster_id: 0,
        user_id: 0,
        start_ms: 0,
        end_ms: 0,
        filter: match p.live {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
    };
    let resume = p
        .after
        .as_deref()
        .map(|c| state.codec.decode(&binding, c))
        .transpose()?
        .and_then(|pos| pos.state);
    let optouts = state.optouts()?;
    let db = state.db()?;
    let now = tci_common::now_ms();
    let window = state.live_window_ms;
    let is_live = move |r: &StreamerRow| {
        r.last_seen_live
            .is_some_and(|t| now.saturating_sub(t) <= window)
    };
    let want = p.live;
    let page = store::read_streamers(
        db,
        p.limit,
        resume,
        move |r| {
            !optouts.is_opted_out(OptOutScope::Channel, r.broadcaster_id)
                && want.is_none_or(|w| is_live(r) == w)
        },
        state.query.max_queries_per_request,
    )
    .await?;
    let cursor = page.next.map(|s| {
        state.codec.encode(
            &binding,
            &Position {
                bucket: 0,
                state: Some(s),
            },
        )
    });
    Ok(render::streamers_json(
        &page.rows,
        cursor.as_deref(),
        is_live,
    ))
}
