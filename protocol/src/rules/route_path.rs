//! The one decision on HTTP route paths (the `http_route` capability and the `/apps/...` routes):
//! a path is accepted only in its normal form, the form it has on a request line, so that
//! two different strings never name the same resource. [`check`] is used both when an
//! app registers a route and when a request is matched to one: a route is granted only
//! if its path is normal, and a request whose path is not normal reaches no route.
//!
//! A path is normal when it is `/` followed by segments separated by `/`, and:
//! - no segment is empty, except the last one (a trailing `/`);
//! - no segment is `.` or `..`, nor `.`/`..` followed by `;` (`..;` is a dot segment to
//!   servers that strip `;` parameters);
//! - every character is one a path may hold as itself (RFC 3986 `pchar`: letters,
//!   digits, `-._~!$&'()*+,;=:@`) or a `%` escape of two hex digits;
//! - no escape is in lower case (`%2f` is `%2F` in normal form), encodes a character
//!   that stands for itself (`%2E` is `.`, `%41` is `A`), or encodes a separator (`%2F`,
//!   `%5C`);
//! - no backslash (some servers and clients read it as `/`).
//!
//! A route's trailing `*` (a prefix route, `/apps/x/*`) is a `pchar`, so patterns are
//! judged by the same rule as the paths they match.

use std::fmt;

/// Why a path is not in normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNormal {
    /// It does not start with `/`.
    NotAbsolute,
    /// It has an empty segment (`//`) before its end.
    EmptySegment,
    /// It has a `.` or `..` segment (the segment as written).
    DotSegment(String),
    /// It has a backslash.
    Backslash,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// An escape in lower case (as written).
    LowerCaseEscape(String),
    /// An escape of `/` or `\` (as written).
    EncodedSeparator(String),
    /// An escape of a character that a path writes as itself (as written, and that
    /// character).
    EncodedUnreserved(String, char),
    /// A character a path cannot hold as itself.
    BadChar(char),
}

impl fmt::Display for NotNormal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotNormal::NotAbsolute => write!(f, "it does not start with `/`"),
            NotNormal::EmptySegment => write!(f, "it has an empty segment (`//`)"),
            NotNormal::DotSegment(s) => write!(f, "it has a dot segment {s:?}"),
            NotNormal::Backslash => write!(f, "it has a backslash"),
            NotNormal::BadEscape => write!(f, "it has a `%` not followed by two hex digits"),
            NotNormal::LowerCaseEscape(e) => {
                write!(f, "the escape {e} is in lower case (write {})", e.to_ascii_uppercase())
            }
            NotNormal::EncodedSeparator(e) => write!(f, "it has an encoded separator {e}"),
            NotNormal::EncodedUnreserved(e, c) => {
                write!(f, "the escape {e} encodes {c:?}, which a path writes as itself")
            }
            NotNormal::BadChar(c) => write!(f, "the character {c:?} must be percent-encoded"),
        }
    }
}

/// `Ok` if `path` is in normal form (see the module's documentation); else why not.
pub fn check(path: &str) -> Result<(), NotNormal> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(NotNormal::NotAbsolute);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() && i != last {
            return Err(NotNormal::EmptySegment);
        }
        check_segment(segment)?;
    }
    Ok(())
}

fn check_segment(segment: &str) -> Result<(), NotNormal> {
    let bare = segment.split(';').next().unwrap_or_default();
    if bare == "." || bare == ".." {
        return Err(NotNormal::DotSegment(segment.to_owned()));
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape = segment.get(i..i + 3).ok_or(NotNormal::BadEscape)?;
                let value = u8::from_str_radix(&escape[1..], 16)
                    .ok()
                    .filter(|_| escape[1..].bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or(NotNormal::BadEscape)?;
                if matches!(value, b'/' | b'\\') {
                    return Err(NotNormal::EncodedSeparator(escape.to_owned()));
                }
                if is_unreserved(value) {
                    return Err(NotNormal::EncodedUnreserved(escape.to_owned(), value.into()));
                }
                if escape.bytes().any(|b| b.is_ascii_lowercase()) {
                    return Err(NotNormal::LowerCaseEscape(escape.to_owned()));
                }
                i += 3;
            }
            b'\\' => return Err(NotNormal::Backslash),
            b if is_unreserved(b) || b"!$&'()*+,;=:@".contains(&b) => i += 1,
            _ => {
                let c = segment[i..].chars().next().unwrap_or_default();
                return Err(NotNormal::BadChar(c));
            }
        }
    }
    Ok(())
}

/// RFC 3986 `unreserved`: written as itself, never escaped, in normal form.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_kept() {
        for path in [
            "/",
            "/apps/weather/today",
            "/apps/weather/",
            "/apps/weather/*",
            "/apps/weather/v1/*",
            "/apps/weather/a*",
            "/apps/weather/...",
            "/apps/weather/.well-known/x",
            "/apps/weather/a.b/c..d/..e",
            "/apps/weather/caf%C3%A9",
            "/apps/weather/a%20b",
            "/apps/weather/100%25",
            "/apps/weather/q%3F",
            "/apps/weather/a;b=c",
            "/apps/weather/~user",
            "/apps/weather/!$&'()+,;=:@",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn every_other_form_is_refused_with_its_reason() {
        use NotNormal::*;
        let dot = |s: &str| DotSegment(s.into());
        let sep = |s: &str| EncodedSeparator(s.into());
        let unres = |s: &str, c| EncodedUnreserved(s.into(), c);
        let cases = [
            ("", NotAbsolute),
            ("apps/x/y", NotAbsolute),
            ("/apps/evil/../victim/secret", dot("..")),
            ("/apps/evil/./x", dot(".")),
            ("/apps/evil/..", dot("..")),
            ("/apps/evil/.", dot(".")),
            ("/apps/evil/../*", dot("..")),
            ("/apps/evil/..;/victim", dot("..;")),
            ("/apps/evil/.;x/victim", dot(".;x")),
            ("/apps/evil/%2e%2e/victim", unres("%2e", '.')),
            ("/apps/evil/%2E%2E/victim", unres("%2E", '.')),
            ("/apps/evil/.%2e/victim", unres("%2e", '.')),
            ("/apps/evil/%2E./victim", unres("%2E", '.')),
            ("/apps/evil/%2e/victim", unres("%2e", '.')),
            ("/apps/evil/%61", unres("%61", 'a')),
            ("/apps/evil/%7E", unres("%7E", '~')),
            ("/apps/evil%2F..%2Fvictim/x", sep("%2F")),
            ("/apps/evil/..%2fvictim", sep("%2f")),
            ("/apps/evil/..%5Cvictim", sep("%5C")),
            ("/apps/evil/..%5cvictim", sep("%5c")),
            ("/apps/evil/..\\victim", Backslash),
            ("/apps/evil\\..\\victim\\secret", Backslash),
            ("/apps//victim/secret", EmptySegment),
            ("/apps/evil//x", EmptySegment),
            ("//apps/evil/x", EmptySegment),
            ("/apps/evil/x//", EmptySegment),
            ("/apps/evil/a%3ab", LowerCaseEscape("%3a".into())),
            ("/apps/evil/%c3%a9", LowerCaseEscape("%c3".into())),
            ("/apps/evil/%", BadEscape),
            ("/apps/evil/%4", BadEscape),
            ("/apps/evil/%zz", BadEscape),
            ("/apps/evil/%+1", BadEscape),
            ("/apps/evil/%é", BadEscape),
            ("/apps/evil/a b", BadChar(' ')),
            ("/apps/evil/x?y", BadChar('?')),
            ("/apps/evil/x#y", BadChar('#')),
            ("/apps/evil/café", BadChar('é')),
            ("/apps/evil/{x}", BadChar('{')),
            ("/apps/evil/\u{0}", BadChar('\u{0}')),
        ];
        for (path, expected) in cases {
            assert_eq!(check(path), Err(expected), "{path:?}");
        }
    }

    #[test]
    fn reasons_read_plainly() {
        let reason = |p: &str| check(p).unwrap_err().to_string();
        assert_eq!(reason("/a/../b"), "it has a dot segment \"..\"");
        assert_eq!(reason("/a/%2e"), "the escape %2e encodes '.', which a path writes as itself");
        assert_eq!(reason("/a/%3a"), "the escape %3a is in lower case (write %3A)");
        assert_eq!(reason("/a%2Fb"), "it has an encoded separator %2F");
    }
}
