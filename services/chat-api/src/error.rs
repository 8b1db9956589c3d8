//! The API's errors: one enum, one function ([`ApiError::status`]) that maps each to its HTTP
//! status, one body shape: `{"error": {"code": "<stable code>", "message": "<human text>"}}`.

use tci_schemas::OptOutScope;
use warp::http::StatusCode;

use crate::{cursor::CursorError, store::StoreError};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A required query parameter is absent.
    #[error("the query parameter `{0}` is required")]
    MissingParameter(&'static str),
    /// `start` / `end` is not an ISO 8601 timestamp.
    #[error("`{name}` must be an ISO 8601 timestamp such as 2024-01-10T01:01:01.011Z (no offset means UTC); got {value:?}")]
    InvalidTimestamp { name: &'static str, value: String },
    /// `end` before `start`.
    #[error("`end` ({end}) is before `start` ({start})")]
    EndBeforeStart { start: String, end: String },
    /// `limit` is not an integer in 1..=100.
    #[error("`limit` must be an integer between 1 and 100 inclusive; got {0:?}")]
    InvalidLimit(String),
    /// The broadcaster id path segment.
    #[error("the broadcaster id must be a non-negative integer; got {0:?}")]
    InvalidBroadcasterId(String),
    /// The user id path segment.
    #[error("the user id must be a non-negative integer; got {0:?}")]
    InvalidUserId(String),
    /// Any other parameter with a bad value, or a parameter given twice.
    #[error("{0}")]
    InvalidParameter(String),
    /// `after` is not a cursor this API issued for this very query.
    #[error("`after` is not a valid cursor for this query: {0}")]
    InvalidCursor(#[from] CursorError),
    /// No such route.
    #[error("no such route; the API is described at /openapi.json")]
    NotFound,
    /// The route exists but not for this method.
    #[error("this method is not allowed here; only GET is")]
    MethodNotAllowed,
    /// The channel, or the chatter of a user log, opted out of the archive.
    #[error("{} {id} opted out of the archive: {}", scope.as_str(), match scope { OptOutScope::User => "their chat is not kept or served", OptOutScope::Channel => "its chat is not kept or served" })]
    OptedOut { scope: OptOutScope, id: i64 },
    /// Cassandra failed or is not connected yet.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ApiError {
    /// The HTTP status of this error. The only place statuses are chosen.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingParameter(_)
            | Self::InvalidTimestamp { .. }
            | Self::EndBeforeStart { .. }
            | Self::InvalidLimit(_)
            | Self::InvalidBroadcasterId(_)
            | Self::InvalidUserId(_)
            | Self::InvalidParameter(_)
            | Self::InvalidCursor(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::OptedOut { .. } => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, documented error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingParameter(_) => "missing_parameter",
            Self::InvalidTimestamp { .. } => "invalid_timestamp",
            Self::EndBeforeStart { .. } => "end_before_start",
            Self::InvalidLimit(_) => "invalid_limit",
            Self::InvalidBroadcasterId(_) => "invalid_broadcaster_id",
            Self::InvalidUserId(_) => "invalid_user_id",
            Self::InvalidParameter(_) => "invalid_parameter",
            Self::InvalidCursor(_) => "invalid_cursor",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::OptedOut { .. } => "opted_out",
            Self::Store(e) => e.code(),
        }
    }

    /// The JSON error body.
    pub fn body(&self) -> String {
        let v =
            serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut s = v.to_string();
        s.push('\n');
        s
    }

    /// The complete HTTP response.
    pub fn into_response(self) -> warp::reply::Response {
        let status = self.status();
        let mut resp = warp::reply::Response::new(self.body().into());
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            warp::http::HeaderValue::from_static("application/json"),
        );
        match &self {
            Self::MethodNotAllowed => {
                h.insert("allow", warp::http::HeaderValue::from_static("GET"));
            }
            Self::Store(e) if e.is_unavailable() => {
                h.insert("retry-after", warp::http::HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_error_is_a_4xx_with_a_json_body() {
        let errs = [
            ApiError::MissingParameter("start"),
            ApiError::InvalidLimit("0".into()),
            ApiError::InvalidBroadcasterId("-1".into()),
            ApiError::InvalidCursor(CursorError::Forged),
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
        ];
        for e in errs {
            assert!(e.status().is_client_error(), "{e}");
            let v: serde_json::Value = serde_json::from_str(&e.body()).expect("json");
            assert_eq!(v["error"]["code"], e.code());
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
        let down = ApiError::Store(StoreError::NotConnected);
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
