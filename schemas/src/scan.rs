//! Byte scans for the short pieces of a chat line: tag keys and values, badges, emote ranges,
//! room settings. They are a few to a few dozen bytes long, where scanning eight bytes at a time
//! in a register beats both `memchr`'s dispatch and `str`'s `char` searcher (which compares each
//! candidate with a `memcmp` call); long spans (a line's whole tag section) still go through
//! `memchr`.
//!
//! Every separator is ASCII, so every split point is a `char` boundary.

const LOW: u64 = 0x0101_0101_0101_0101;
const SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// Bit 7 of each byte of the result is set exactly where that byte of `x` is zero (no false
/// positives: `(y & 0x7f) + 0x7f` cannot carry into the next byte).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & SEVEN).wrapping_add(SEVEN)) | x | SEVEN)
}

/// Index of the first byte of `s` for which `hit` gives a nonzero mask (see [`zero_bytes`]),
/// eight bytes at a time, then the tail one by one with `is`.
#[inline]
fn find_by(s: &str, hit: impl Fn(u64) -> u64, is: impl Fn(u8) -> bool) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for c in chunks.by_ref() {
        if let Ok(a) = <[u8; 8]>::try_from(c) {
            let m = hit(u64::from_le_bytes(a));
            if m != 0 {
                return Some(at + (m.trailing_zeros() / 8) as usize);
            }
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| is(c))
        .map(|i| at + i)
}

/// Index of the first `b` in `s`.
#[inline]
pub fn find(s: &str, b: u8) -> Option<usize> {
    debug_assert!(b.is_ascii());
    let p = LOW * u64::from(b);
    find_by(s, |x| zero_bytes(x ^ p), |c| c == b)
}

/// Index of the first `a` or `b` in `s`.
#[inline]
pub fn find2(s: &str, a: u8, b: u8) -> Option<usize> {
    debug_assert!(a.is_ascii() && b.is_ascii());
    let (pa, pb) = (LOW * u64::from(a), LOW * u64::from(b));
    find_by(
        s,
        |x| zero_bytes(x ^ pa) | zero_bytes(x ^ pb),
        |c| c == a || c == b,
    )
}

/// Index of the last `b` in `s`.
#[inline]
pub fn rfind(s: &str, b: u8) -> Option<usize> {
    debug_assert!(b.is_ascii());
    s.as_bytes().iter().rposition(|&c| c == b)
}

/// `s` around its first `b`: what `s.split_once(b as char)` gives.
#[inline]
pub fn split_once(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find(s, b)?;
    Some((&s[..i], &s[i + 1..]))
}

/// `s` around its last `b`: what `s.rsplit_once(b as char)` gives.
#[inline]
pub fn rsplit_once(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = rfind(s, b)?;
    Some((&s[..i], &s[i + 1..]))
}

/// The pieces of `s` between `b`s: what `s.split(b as char)` gives (one empty piece for an
/// empty `s`).
#[inline]
pub fn split(s: &str, b: u8) -> Split<'_> {
    debug_assert!(b.is_ascii());
    Split { rest: Some(s), b }
}

/// See [`split`].
#[derive(Debug, Clone)]
pub struct Split<'a> {
    rest: Option<&'a str>,
    b: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match find(s, self.b) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Each scan is the standard library's `char` version.
        #[test]
        fn scans_equal_the_char_versions(s in "[a-c;=/,é\\x00\\x7f-]{0,40}", b in prop::sample::select(vec![b';', b'=', b'/', b',', b'-', b'a'])) {
            let c = b as char;
            prop_assert_eq!(super::find(&s, b), s.find(c));
            prop_assert_eq!(super::find2(&s, b, b'='), s.find([c, '=']));
            prop_assert_eq!(super::rfind(&s, b), s.rfind(c));
            prop_assert_eq!(super::split_once(&s, b), s.split_once(c));
            prop_assert_eq!(super::rsplit_once(&s, b), s.rsplit_once(c));
            prop_assert_eq!(super::split(&s, b).collect::<Vec<_>>(), s.split(c).collect::<Vec<_>>());
        }
    }
}
