//! The local filters: minimum viewers and allow/deny lists of logins. (Languages and game ids are
//! passed to Helix instead, which is cheaper: fewer pages.)

use std::collections::HashSet;

use crate::{config::Filters, helix::HelixStream};

/// Why a stream was dropped; the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    MinViewers,
    Denied,
    NotAllowed,
}

impl Rejected {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MinViewers => "min_viewers",
            Self::Denied => "denied",
            Self::NotAllowed => "not_allowed",
        }
    }
}

/// [`Filters`] compiled for lookups.
#[derive(Debug, Clone, Default)]
pub struct LocalFilter {
    min_viewers: i64,
    allow: Option<HashSet<String>>,
    deny: HashSet<String>,
}

impl LocalFilter {
    pub fn new(f: &Filters) -> Self {
        let norm = |v: &[String]| {
            v.iter()
                .map(|l| l.trim().to_ascii_lowercase())
                .filter(|l| !l.is_empty())
                .collect::<HashSet<_>>()
        };
        let allow = norm(&f.allow_logins);
        Self {
            min_viewers: f.min_viewers,
            allow: (!allow.is_empty()).then_some(allow),
            deny: norm(&f.deny_logins),
        }
    }

    /// `Ok` when the stream is kept; otherwise the first reason it is not. Deny wins over allow.
    pub fn check(&self, s: &HelixStream) -> Result<(), Rejected> {
        let login = s.user_login.to_ascii_lowercase();
        if self.deny.contains(&login) {
            return Err(Rejected::Denied);
        }
        if let Some(allow) = &self.allow {
            if !allow.contains(&login) {
                return Err(Rejected::NotAllowed);
            }
        }
        if s.viewer_count < self.min_viewers {
            return Err(Rejected::MinViewers);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(login: &str, viewers: i64) -> HelixStream {
        HelixStream {
            user_login: login.into(),
            viewer_count: viewers,
            ..HelixStream::default()
        }
    }

    #[test]
    fn no_filters_keep_everything() {
        let f = LocalFilter::new(&Filters::default());
        assert_eq!(f.check(&stream("anyone", 0)), Ok(()));
    }

    #[test]
    fn min_viewers_is_inclusive() {
        let f = LocalFilter::new(&Filters {
            min_viewers: 10,
            ..Filters::default()
        });
        assert_eq!(f.check(&stream("a", 9)), Err(Rejected::MinViewers));
        assert_eq!(f.check(&stream("a", 10)), Ok(()));
    }

    #[test]
    fn allow_and_deny_are_case_insensitive_and_deny_wins() {
        let f = LocalFilter::new(&Filters {
            allow_logins: vec!["Sneakylol".into(), "both".into(), " ".into()],
            deny_logins: vec!["BOTH".into()],
            min_viewers: 5,
            ..Filters::default()
        });
        assert_eq!(f.check(&stream("sneakylol", 100)), Ok(()));
        assert_eq!(f.check(&stream("SNEAKYLOL", 100)), Ok(()));
        assert_eq!(f.check(&stream("both", 100)), Err(Rejected::Denied));
        assert_eq!(f.check(&stream("other", 100)), Err(Rejected::NotAllowed));
        assert_eq!(f.check(&stream("sneakylol", 1)), Err(Rejected::MinViewers));
    }

    #[test]
    fn an_empty_allow_list_allows_all_but_the_denied() {
        let f = LocalFilter::new(&Filters {
            deny_logins: vec!["spam".into()],
            ..Filters::default()
        });
        assert_eq!(f.check(&stream("spam", 1)), Err(Rejected::Denied));
        assert_eq!(f.check(&stream("fine", 1)), Ok(()));
    }
}
