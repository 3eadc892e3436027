//! A secret setting (a password): kept out of `Debug`, `Display` and serialized output, so it
//! cannot reach a log, an error message or a panic by accident. Read it with
//! [`Secret::expose`] where it is handed to a client, and nowhere else.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A password or other credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// A secret read from a file (container secrets): the contents without the line break that
    /// editors and `echo` add at the end.
    pub fn from_file_contents(text: &str) -> Self {
        Secret(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text).to_owned())
    }

    /// The value, for the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    /// Serialized redacted: a configuration written back out never carries the secret.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A URL as it may be shown: any `user:password@` removed.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find(['/', '?', '#']).map_or((rest, ""), |i| rest.split_at(i));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "<redacted> <redacted> Some(<redacted>)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        let back: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(back.expose(), "hunter2");
    }

    #[test]
    fn a_file_loses_its_final_line_break_only() {
        assert_eq!(Secret::from_file_contents("pw\n").expose(), "pw");
        assert_eq!(Secret::from_file_contents("pw\r\n").expose(), "pw");
        assert_eq!(Secret::from_file_contents("pw").expose(), "pw");
        assert_eq!(Secret::from_file_contents(" pw \n\n").expose(), " pw \n");
    }

    #[test]
    fn credentials_are_cut_from_a_url() {
        assert_eq!(redact_url("http://a:b@h:1/p?q"), "http://h:1/p?q");
        assert_eq!(redact_url("https://h/x@y"), "https://h/x@y");
        assert_eq!(redact_url("no scheme"), "no scheme");
    }
}
