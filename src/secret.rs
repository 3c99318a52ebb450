//! A value that must never be printed: tokens, passwords, keys. Its own module, low in the
//! layers, because settings, channels and the domain's types all hold secrets.

use serde::{Deserialize, Serialize};

/// A value that must never reach a log line or a terminal: Debug and Display print a placeholder.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Replace a set value by `***`, for a configuration about to be printed.
    pub fn redact(&mut self) {
        if !self.0.is_empty() {
            self.0 = "***".into();
        }
    }
}

/// `url` with its password (if any) replaced by `***`, for logs and terminals.
pub fn redacted_url(url: &str) -> String {
    if url.is_empty() {
        return String::new();
    }
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some("***")).is_ok() {
                parsed.to_string()
            } else {
                "(a URL with a password)".into()
            }
        }
        Ok(_) => url.to_owned(),
        // Unparsable: it may still hold a secret.
        Err(_) => "(an unreadable URL)".into(),
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}
