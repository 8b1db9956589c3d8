//! Opaque paging cursors.
//!
//! A cursor is where the next page starts: a chat bucket and the Cassandra paging state inside
//! it (empty = the start of the bucket). It is bound to the query it was issued for (route kind,
//! broadcaster, user, `start`, `end`, filter) and authenticated with a truncated HMAC-SHA256
//! under the configured key, so a cursor that was altered, truncated, or issued for another
//! query is refused before anything reaches Cassandra.
//!
//! Wire format, base64url without padding:
//! `version (1 byte, = 1) | bucket (i64 big-endian) | paging state (0..n bytes) | tag (16 bytes)`
//! where `tag = HMAC-SHA256(key, "tci-cursor" | binding | version..state)[..16]`. The binding is
//! not carried in the cursor (the request supplies it), only authenticated.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + 8;
/// Longest cursor accepted, in characters (paging states are tens of bytes).
pub const MAX_CURSOR_CHARS: usize = 2048;

/// Which route a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RouteKind {
    /// `/v1.0/{broadcaster_id}/chat`
    Chat = 1,
    /// `/v1.0/{broadcaster_id}/users/{user_id}/chat` (its positions are days since storage v3;
    /// 2 was its kind before, with 5-minute buckets, so those cursors no longer verify).
    UserChat = 4,
    /// `/v1.0/streamers`
    Streamers = 3,
}

/// The query a cursor is valid for. Fields that do not apply to a route are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub kind: RouteKind,
    pub broadcaster_id: i64,
    pub user_id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Route-specific filter (the streamer list's `live` filter: 0 none, 1 true, 2 false).
    pub filter: u8,
}

impl Binding {
    fn to_bytes(self) -> [u8; 34] {
        let mut b = [0u8; 34];
        b[0] = self.kind as u8;
        b[1..9].copy_from_slice(&self.broadcaster_id.to_be_bytes());
        b[9..17].copy_from_slice(&self.user_id.to_be_bytes());
        b[17..25].copy_from_slice(&self.start_ms.to_be_bytes());
        b[25..33].copy_from_slice(&self.end_ms.to_be_bytes());
        b[33] = self.filter;
        b
    }
}

/// A resumable position: the bucket and the Cassandra paging state within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub bucket: i64,
    /// Raw paging state; `None` means the start of the bucket.
    pub state: Option<Vec<u8>>,
}

/// Why a cursor was refused. None of these reaches Cassandra.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("it is longer than {MAX_CURSOR_CHARS} characters")]
    TooLong,
    #[error("it is not base64url text (A-Z a-z 0-9 - _, no padding)")]
    NotBase64,
    #[error("it is truncated")]
    Truncated,
    #[error("it was altered, or was issued for a different query (broadcaster, user, start, end or filter)")]
    Forged,
    #[error("it has an unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("its position lies outside the requested time range")]
    OutOfRange,
}

/// Encodes and verifies cursors under one key.
#[derive(Clone)]
pub struct CursorCodec {
    mac: HmacSha256,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

impl CursorCodec {
    /// A codec keyed with `secret` (any length; HMAC hashes long keys).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <HmacSha256 as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Self { mac }
    }

    fn tag(&self, binding: &Binding, body: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(b"tci-cursor");
        m.update(&binding.to_bytes());
        m.update(body);
        m
    }

    /// The cursor of `pos` for the query `binding`.
    pub fn encode(&self, binding: &Binding, pos: &Position) -> String {
        let state = pos.state.as_deref().unwrap_or_default();
        let mut buf = Vec::with_capacity(HEADER_LEN + state.len() + TAG_LEN);
        buf.push(VERSION);
        buf.extend_from_slice(&pos.bucket.to_be_bytes());
        buf.extend_from_slice(state);
        let tag = self.tag(binding, &buf).finalize().into_bytes();
        buf.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Verifies `cursor` against `binding` and returns its position.
    pub fn decode(&self, binding: &Binding, cursor: &str) -> Result<Position, CursorError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::TooLong);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(cursor.as_bytes())
            .map_err(|_| CursorError::NotBase64)?;
        if raw.len() < HEADER_LEN + TAG_LEN {
            return Err(CursorError::Truncated);
        }
        let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
        self.tag(binding, body)
            .verify_truncated_left(tag)
            .map_err(|_| CursorError::Forged)?;
        if body[0] != VERSION {
            return Err(CursorError::UnsupportedVersion(body[0]));
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[1..9]);
        let state = &body[HEADER_LEN..];
        Ok(Position {
            bucket: i64::from_be_bytes(b),
            state: (!state.is_empty()).then(|| state.to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn binding() -> Binding {
        Binding {
            kind: RouteKind::Chat,
            broadcaster_id: 24538518,
            user_id: 0,
            start_ms: 1_704_848_461_011,
            end_ms: 1_706_659_199_000,
            filter: 0,
        }
    }

    #[test]
    fn round_trip_with_and_without_state() {
        let c = CursorCodec::new(b"k");
        for pos in [
            Position {
                bucket: 1_706_408_100_000,
                state: Some(vec![1, 2, 3, 250]),
            },
            Position {
                bucket: 1_706_408_400_000,
                state: None,
            },
            Position {
                bucket: -300_000,
                state: Some(vec![0; 300]),
            },
        ] {
            let s = c.encode(&binding(), &pos);
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{s}"
            );
            assert_eq!(c.decode(&binding(), &s), Ok(pos));
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let c = CursorCodec::new(b"k");
        let pos = Position {
            bucket: 1_706_408_100_000,
            state: Some(vec![9; 20]),
        };
        let raw = URL_SAFE_NO_PAD
            .decode(c.encode(&binding(), &pos))
            .expect("b64");
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                let e = c.decode(&binding(), &URL_SAFE_NO_PAD.encode(&t));
                assert_eq!(e, Err(CursorError::Forged), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncated_and_garbage_cursors_are_refused() {
        let c = CursorCodec::new(b"k");
        let s = c.encode(
            &binding(),
            &Position {
                bucket: 0,
                state: Some(vec![7; 10]),
            },
        );
        for n in 0..s.len() {
            assert!(
                c.decode(&binding(), &s[..n]).is_err(),
                "prefix of {n} chars accepted"
            );
        }
        assert_eq!(c.decode(&binding(), &s[..10]), Err(CursorError::Truncated));
        assert_eq!(
            c.decode(&binding(), "not a cursor!"),
            Err(CursorError::NotBase64)
        );
        assert_eq!(
            c.decode(&binding(), &"A".repeat(MAX_CURSOR_CHARS + 1)),
            Err(CursorError::TooLong)
        );
        // The spec sample's cursor (issued by the original service) is foreign.
        let sample = "3Cj7V5upmmx1b6rawVelGDvOKUpMIqwCaC9cW2zqqDQbzLM7d22rBjRAnMUNT04afSQDqRWpEwSO2DPNSXkJmCbEg";
        assert!(c.decode(&binding(), sample).is_err());
    }

    #[test]
    fn a_cursor_is_bound_to_its_query_and_key() {
        let c = CursorCodec::new(b"k");
        let pos = Position {
            bucket: 5,
            state: None,
        };
        let s = c.encode(&binding(), &pos);
        let others = [
            Binding {
                broadcaster_id: 1,
                ..binding()
            },
            Binding {
                kind: RouteKind::UserChat,
                ..binding()
            },
            Binding {
                user_id: 7,
                ..binding()
            },
            Binding {
                start_ms: binding().start_ms + 1,
                ..binding()
            },
            Binding {
                end_ms: binding().end_ms - 1,
                ..binding()
            },
            Binding {
                filter: 1,
                ..binding()
            },
        ];
        for b in others {
            assert_eq!(c.decode(&b, &s), Err(CursorError::Forged), "{b:?}");
        }
        assert_eq!(
            CursorCodec::new(b"other key").decode(&binding(), &s),
            Err(CursorError::Forged)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") {
            let _ = CursorCodec::new(b"k").decode(&binding(), &s);
        }

        #[test]
        fn round_trips(bucket in any::<i64>(), state in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..200))) {
            let c = CursorCodec::new(b"key");
            let pos = Position { bucket, state };
            prop_assert_eq!(c.decode(&binding(), &c.encode(&binding(), &pos)), Ok(pos));
        }
    }
}
