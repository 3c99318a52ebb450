//! Domain types with their validation: phones, tags, states, channels, audience filters.
//!
//! Everything a user types is parsed into one of these at the edge, so the layers below never see
//! an invalid phone, an unknown state or a malformed filter.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use blast_jobs::Lane as Priority;

/// Input a user gave that blast will not accept, with a message that says how to fix it and,
/// when one field of a request is at fault, that field's name as the API's JSON spells it (the
/// API answers it, the console shows the message beside that field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String, Option<&'static str>);

pub fn invalid(msg: impl Into<String>) -> InvalidInput {
    InvalidInput(msg.into(), None)
}

impl InvalidInput {
    /// The same error, naming `field` as the one at fault; a field named before is kept.
    pub fn at(self, field: &'static str) -> InvalidInput {
        InvalidInput(self.0, self.1.or(Some(field)))
    }

    /// The field at fault, when one is.
    pub fn field(&self) -> Option<&'static str> {
        self.1
    }
}

/// A phone number in one canonical form: the E.164 digits without the plus sign
/// (`79001234567`, `442079460958`). People type `+7 900 123-45-67`, `8 900 1234567` or
/// `79001234567`; all of them are this one number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

/// The region a number without a country code belongs to (`phones.default_region`), set
/// once at start-up; Russia until then.
static DEFAULT_REGION: std::sync::OnceLock<phonenumber::country::Id> = std::sync::OnceLock::new();

/// Take `phones.default_region` (an ISO 3166 code such as `RU`) for numbers typed without a
/// country code. Called once at start-up; an unknown code is an error naming it.
pub fn set_default_phone_region(code: &str) -> Result<(), InvalidInput> {
    let region = parse_region(code)?;
    // A second call (tests start several servers in one process) keeps the first region.
    let _ = DEFAULT_REGION.set(region);
    Ok(())
}

/// An ISO 3166 region code libphonenumber knows.
pub fn parse_region(code: &str) -> Result<phonenumber::country::Id, InvalidInput> {
    code.trim()
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .map_err(|_| {
            invalid(format!(
                "unknown phone region {code:?}: use an ISO 3166 code such as RU"
            ))
        })
}

impl Phone {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mobile operator code of a Russian number: the three digits after the country code.
    /// Numbers of other countries have none (empty): they match no operator filter.
    pub fn operator_code(&self) -> &str {
        if self.is_russian() { &self.0[1..4] } else { "" }
    }

    /// +7 with a ten-digit national number (Russia and Kazakhstan share the code; both have
    /// operator codes in the same place).
    fn is_russian(&self) -> bool {
        self.0.len() == 11 && self.0.starts_with('7')
    }

    /// The phone as the SMS API wants it: a number.
    pub fn as_number(&self) -> i64 {
        // At most 15 ASCII digits (E.164) always fit an i64; validated in `parse`.
        self.0.parse().unwrap_or_default()
    }

    /// Parse a phone as typed, a number without a country code belonging to `region`.
    pub fn parse_in(text: &str, region: phonenumber::country::Id) -> Result<Phone, InvalidInput> {
        let typed = text.trim();
        let refuse = |why: &str| {
            invalid(format!(
                "invalid phone {typed:?}: {why} (e.g. +79001234567, 89001234567 or 79001234567)"
            ))
        };
        if typed.chars().count() > 32 {
            return Err(refuse("longer than any phone number"));
        }
        let digits: String = typed
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        let bare = digits.strip_prefix('+').unwrap_or(&digits);
        if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(
                "only digits, spaces, dashes, brackets and a leading + belong in a phone",
            ));
        }
        // 7XXXXXXXXXX, with or without +: the form blast has always stored, every operator
        // code accepted (numbering plans change faster than any copy of them).
        if bare.len() == 11 && bare.starts_with('7') {
            return Ok(Phone(bare.to_owned()));
        }
        let parsed = if digits.starts_with('+') {
            phonenumber::parse(None, &digits)
        } else {
            phonenumber::parse(Some(region), &digits)
                .ok()
                .filter(phonenumber::is_valid)
                // A number that already starts with its country code, typed without the +.
                .map_or_else(|| phonenumber::parse(None, format!("+{digits}")), Ok)
        }
        .map_err(|_| refuse("not a phone number"))?;
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        let canonical = e164.trim_start_matches('+');
        if canonical.len() == 11 && canonical.starts_with('7') {
            return Ok(Phone(canonical.to_owned()));
        }
        if !phonenumber::is_valid(&parsed) {
            return Err(refuse("no such number in its country's numbering plan"));
        }
        Ok(Phone(canonical.to_owned()))
    }
}

impl FromStr for Phone {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let region = DEFAULT_REGION
            .get()
            .copied()
            .unwrap_or(phonenumber::country::Id::RU);
        Phone::parse_in(s, region)
    }
}

impl TryFrom<String> for Phone {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A three-digit operator code, as used in mailing filters.
pub fn parse_operator_code(s: &str) -> Result<String, InvalidInput> {
    let s = s.trim();
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(invalid(format!(
            "invalid operator code {s:?}: expected three digits, e.g. 900"
        )))
    }
}

/// A tag name: 1 to 64 characters of letters, digits, `-`, `_`, `.` or `:`.
pub fn parse_tag(s: &str) -> Result<String, InvalidInput> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.chars().count() <= 64
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(invalid(format!(
            "invalid tag {s:?}: use 1-64 letters, digits, '-', '_', '.' or ':'"
        )))
    }
}

/// Client fields a template sees; attributes may not take these names.
pub const RESERVED_ATTRIBUTES: &[&str] = &[
    "id",
    "phone",
    "operator_code",
    "name",
    "email",
    "timezone",
    "tags",
    "telegram_chat_id",
];

/// An attribute name usable in templates: a letter or `_`, then letters, digits or `_`.
pub fn parse_attribute_name(key: &str) -> Result<String, InvalidInput> {
    let key = key.trim();
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 64;
    if !valid {
        return Err(invalid(format!(
            "invalid attribute name {key:?}: use letters, digits and '_', starting with a letter"
        )));
    }
    if RESERVED_ATTRIBUTES.contains(&key) {
        return Err(invalid(format!(
            "attribute name {key:?} is a client field; set it with its own option"
        )));
    }
    Ok(key.to_owned())
}

/// Tags as given, validated, sorted, without repeats.
pub fn parse_tags(tags: &[String]) -> Result<Vec<String>, InvalidInput> {
    let mut out: Vec<String> = tags
        .iter()
        .map(|t| parse_tag(t))
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// An IANA time zone name, e.g. Europe/Moscow.
pub fn parse_timezone(s: &str) -> Result<String, InvalidInput> {
    s.trim()
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_owned())
        .map_err(|_| {
            invalid(format!(
                "unknown time zone {s:?}: use an IANA name such as Europe/Moscow"
            ))
        })
}

/// A loose email check: something@something.something. Real validation is the SMTP server's.
pub fn parse_email(s: &str) -> Result<String, InvalidInput> {
    let s = s.trim();
    let valid = s.len() <= 254
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !s.chars().any(char::is_whitespace);
    if valid {
        Ok(s.to_owned())
    } else {
        Err(invalid(format!("invalid email address {s:?}")))
    }
}

/// Which channel a mailing goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// The external SMS HTTP API.
    Sms,
    /// Email over SMTP, to clients that have an address and did not unsubscribe.
    Email,
    /// The Telegram Bot API, to clients with a chat id who did not block the bot.
    Telegram,
    /// A JSON-lines file: every delivery written as one line. For trials and demos.
    Log,
    /// Web push to the browsers a client subscribed (VAPID, aes128gcm).
    #[serde(rename = "webpush")]
    WebPush,
    /// The client's in-app inbox: stored, and pushed to the app's open sockets.
    #[serde(rename = "inapp")]
    InApp,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 6] = [
        ChannelKind::Sms,
        ChannelKind::Email,
        ChannelKind::Telegram,
        ChannelKind::Log,
        ChannelKind::WebPush,
        ChannelKind::InApp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Email => "email",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Log => "log",
            ChannelKind::WebPush => "webpush",
            ChannelKind::InApp => "inapp",
        }
    }
}

impl FromStr for ChannelKind {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(ChannelKind::Sms),
            "email" => Ok(ChannelKind::Email),
            "telegram" => Ok(ChannelKind::Telegram),
            "log" | "file" => Ok(ChannelKind::Log),
            "webpush" | "web-push" | "push" => Ok(ChannelKind::WebPush),
            "inapp" | "in-app" | "inbox" => Ok(ChannelKind::InApp),
            other => Err(invalid(format!(
                "unknown channel {other:?}: expected sms, email, telegram, webpush, inapp or log"
            ))),
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(invalid(format!(
                        concat!("unknown ", stringify!($name), " {:?}"), other))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where one message (one recipient of one mailing) stands.
    MessageState {
        /// Materialized, waiting for its first attempt.
        Pending => "pending",
        /// Claimed by the pump and carried by a queue job.
        Queued => "queued",
        /// Handed to the channel; the outcome is not written yet.
        Sending => "sending",
        Sent => "sent",
        /// Failed in a way that may pass; retried at next_attempt_at.
        FailedTemporary => "failed_temporary",
        FailedPermanent => "failed_permanent",
        /// The mailing's end window closed before it could be sent.
        Expired => "expired",
        Cancelled => "cancelled",
        /// Deliberately not sent (duplicate, opted out, blocked).
        Skipped => "skipped",
        /// A send was cut off mid-flight on a channel that cannot be resent safely.
        Unknown => "unknown",
    }
}

impl MessageState {
    /// States from which nothing more will happen.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            MessageState::Pending
                | MessageState::Queued
                | MessageState::Sending
                | MessageState::FailedTemporary
        )
    }
}

string_enum! {
    /// Where a mailing stands.
    MailingState {
        /// Waiting for start_at.
        Scheduled => "scheduled",
        /// Rows materialized; being delivered.
        Running => "running",
        /// Delivery held by the operator; resumes where it stopped.
        Paused => "paused",
        /// Every message reached a final state.
        Done => "done",
        Cancelled => "cancelled",
    }
}

/// Which clients a mailing goes to. Empty lists do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AudienceFilter {
    /// A client matches when it has any of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A client matches when its operator code is any of these.
    #[serde(default)]
    pub operator_codes: Vec<String>,
}

impl AudienceFilter {
    /// The audience an operator asked for, from the API or the command line alike: tags and
    /// operator codes checked and in order, or every client, which must be asked for
    /// explicitly (`everyone`): a forgotten filter must not message the whole base.
    pub fn requested(
        tags: &[String],
        operator_codes: &[String],
        everyone: bool,
    ) -> Result<AudienceFilter, InvalidInput> {
        let tags = parse_tags(tags)?;
        let mut codes: Vec<String> = operator_codes
            .iter()
            .map(|o| parse_operator_code(o))
            .collect::<Result<_, _>>()?;
        codes.sort();
        codes.dedup();
        match (tags.is_empty() && codes.is_empty(), everyone) {
            (true, false) => Err(invalid(
                "no audience given: name tags or operator codes (--tag, --operator; \"tags\", \"operator_codes\"), or ask for every client with --all (\"audience\": \"all\")",
            )),
            (false, true) => Err(invalid(
                "--all (\"audience\": \"all\") means every client: leave out the tags and operator codes, or drop --all",
            )),
            _ => Ok(AudienceFilter {
                tags,
                operator_codes: codes,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_must_be_asked_for() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = AudienceFilter::requested(&[], &[], false).expect_err("no filter");
        assert!(none.0.contains("--all"), "{none}");
        assert_eq!(
            AudienceFilter::requested(&[], &[], true).expect("everyone"),
            AudienceFilter::default()
        );
        let both = AudienceFilter::requested(&strings(&["vip"]), &[], true);
        assert!(both.is_err(), "all and a tag contradict each other");
        let filter =
            AudienceFilter::requested(&strings(&["vip", "new", "vip"]), &strings(&["900"]), false)
                .expect("a filter");
        assert_eq!(filter.tags, ["new", "vip"]);
        assert_eq!(filter.operator_codes, ["900"]);
        assert!(AudienceFilter::requested(&strings(&["no spaces"]), &[], false).is_err());
    }

    #[test]
    fn phones_are_taken_as_people_type_them_and_stored_one_way() {
        for typed in [
            "79001234567",
            "+79001234567",
            "89001234567",
            "8 (900) 123-45-67",
            "+7 900 123 45 67",
            "9001234567",
        ] {
            let p: Phone = typed.parse().unwrap_or_else(|e| panic!("{typed:?}: {e}"));
            assert_eq!(p.as_str(), "79001234567", "{typed:?}");
            assert_eq!(p.operator_code(), "900");
            assert_eq!(p.as_number(), 79001234567);
        }
        let london: Phone = "+44 20 7946 0958".parse().expect("a UK number");
        assert_eq!(london.as_str(), "442079460958");
        assert_eq!(london.operator_code(), "", "no operator code outside +7");
        let berlin =
            Phone::parse_in("030 901820", parse_region("de").expect("DE")).expect("national in DE");
        assert_eq!(berlin.as_str(), "4930901820");
        for bad in [
            "",
            "7900123456a",
            "+",
            "12",
            "+999 123",
            "+44 20 7946",
            "hello",
        ] {
            let err = bad.parse::<Phone>().expect_err(bad);
            assert!(err.0.contains("invalid phone"), "{bad:?}: {err}");
        }
        assert!(parse_region("XX").is_err());
    }

    #[test]
    fn tags_zones_and_emails_are_checked() {
        assert!(parse_tag("vip").is_ok());
        assert!(parse_tag("a b").is_err());
        assert!(parse_tag("").is_err());
        assert_eq!(
            parse_timezone("Europe/Moscow").expect("zone"),
            "Europe/Moscow"
        );
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert!(parse_email("a@b.ru").is_ok());
        assert!(parse_email("a@b").is_err());
        assert!(parse_operator_code("90").is_err());
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in MessageState::ALL {
            assert_eq!(s.as_str().parse::<MessageState>(), Ok(*s));
        }
        assert!(MessageState::Sent.is_final());
        assert!(!MessageState::FailedTemporary.is_final());
    }
}

/// Hours of the recipient's own day when a message may go out, e.g. 09:00-21:00 in the client's
/// time zone. A window whose end is before its start runs over midnight (22:00-06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalHours {
    pub from: chrono::NaiveTime,
    pub to: chrono::NaiveTime,
}

impl FromStr for LocalHours {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            invalid(format!(
                "invalid local hours {s:?}: expected HH:MM-HH:MM, e.g. 09:00-21:00"
            ))
        };
        let (from, to) = s.trim().split_once('-').ok_or_else(bad)?;
        let time =
            |t: &str| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let hours = LocalHours {
            from: time(from)?,
            to: time(to)?,
        };
        if hours.from == hours.to {
            return Err(invalid(format!(
                "invalid local hours {s:?}: the window is empty"
            )));
        }
        Ok(hours)
    }
}

impl TryFrom<String> for LocalHours {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LocalHours> for String {
    fn from(h: LocalHours) -> String {
        h.to_string()
    }
}

impl fmt::Display for LocalHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.from.format("%H:%M"),
            self.to.format("%H:%M")
        )
    }
}

impl LocalHours {
    fn contains(&self, t: chrono::NaiveTime) -> bool {
        if self.from < self.to {
            self.from <= t && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }

    /// `None` when `now_ms` falls inside the window in `timezone` (an IANA name; unknown names
    /// count as UTC); otherwise the unix ms of the next opening, always later than `now_ms`.
    pub fn next_opening(&self, timezone: &str, now_ms: i64) -> Option<i64> {
        use chrono::{Duration, LocalResult, TimeZone};
        let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
        let Some(now) = chrono::DateTime::from_timestamp_millis(now_ms) else {
            return Some(now_ms + 3_600_000);
        };
        let now = now.with_timezone(&tz);
        if self.contains(now.time()) {
            return None;
        }
        // The opening on the local day of `naive`: an ambiguous time (clocks going back) may
        // resolve to either instant, a skipped one (clocks going forward) to the first valid
        // minute after the gap.
        let resolve = |naive: chrono::NaiveDateTime| -> Vec<i64> {
            (0..=180)
                .map(|m| tz.from_local_datetime(&(naive + Duration::minutes(m))))
                .find(|r| !matches!(r, LocalResult::None))
                .map(|r| match r {
                    LocalResult::Single(t) => vec![t.timestamp_millis()],
                    LocalResult::Ambiguous(a, b) => {
                        vec![a.timestamp_millis(), b.timestamp_millis()]
                    }
                    LocalResult::None => Vec::new(),
                })
                .unwrap_or_default()
        };
        let today = now.date_naive();
        let opening = [
            today.pred_opt(),
            Some(today),
            today.succ_opt(),
            today.succ_opt().and_then(|d| d.succ_opt()),
        ]
        .into_iter()
        .flatten()
        .flat_map(|day| resolve(day.and_time(self.from)))
        .filter(|t| *t > now_ms)
        .min();
        // Cannot tell when it opens: defer an hour rather than send outside the hours.
        Some(opening.unwrap_or(now_ms + 3_600_000))
    }
}

#[cfg(test)]
mod local_hours_tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .timestamp_millis()
    }

    #[test]
    fn parses_and_prints() {
        let h: LocalHours = "09:00-21:00".parse().expect("valid");
        assert_eq!(h.to_string(), "09:00-21:00");
        for bad in ["9-21", "09:00", "25:00-26:00", "10:00-10:00", ""] {
            assert!(bad.parse::<LocalHours>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn opens_at_the_next_local_start() {
        let h: LocalHours = "09:00-21:00".parse().expect("valid");
        // 07:00 in Moscow (UTC+3) is 04:00Z: closed until 09:00 Moscow = 06:00Z.
        assert_eq!(
            h.next_opening("Europe/Moscow", ms("2026-12-01T04:00:00Z")),
            Some(ms("2026-12-01T06:00:00Z"))
        );
        assert_eq!(
            h.next_opening("Europe/Moscow", ms("2026-12-01T10:00:00Z")),
            None
        );
        // 22:00 in Moscow: closed until tomorrow 09:00.
        assert_eq!(
            h.next_opening("Europe/Moscow", ms("2026-12-01T19:00:00Z")),
            Some(ms("2026-12-02T06:00:00Z"))
        );
    }

    #[test]
    fn clock_changes_never_give_a_past_or_a_late_opening() {
        let h: LocalHours = "02:30-21:00".parse().expect("valid");
        // Berlin falls back on 2026-10-25 (03:00 CEST -> 02:00 CET). At 02:10 CET (01:10Z) the
        // day's 02:30 CEST (00:30Z) is past; the opening is 02:30 CET (01:30Z).
        assert_eq!(
            h.next_opening("Europe/Berlin", ms("2026-10-25T01:10:00Z")),
            Some(ms("2026-10-25T01:30:00Z"))
        );
        // Berlin springs forward on 2026-03-29 (02:00 CET -> 03:00 CEST): 02:30 does not exist
        // that day; the opening is 03:00 CEST (01:00Z).
        assert_eq!(
            h.next_opening("Europe/Berlin", ms("2026-03-29T00:30:00Z")),
            Some(ms("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn a_window_over_midnight_works() {
        let night: LocalHours = "22:00-06:00".parse().expect("valid");
        assert_eq!(night.next_opening("UTC", ms("2026-12-01T23:30:00Z")), None);
        assert_eq!(night.next_opening("UTC", ms("2026-12-01T05:59:00Z")), None);
        assert_eq!(
            night.next_opening("UTC", ms("2026-12-01T12:00:00Z")),
            Some(ms("2026-12-01T22:00:00Z"))
        );
    }
}

// Types that several layers hold (the store reads them, templates and channels use them):
// they live here, below all of them.

/// A client as templates and channels see it (the store reads it).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Client {
    pub id: crate::ids::ClientId,
    /// None for a client who came through the subscriber bot and never gave a phone.
    pub phone: Option<String>,
    pub operator_code: String,
    pub name: String,
    pub email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    pub timezone: String,
    pub tags: Vec<String>,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// The bot's public numeric id: the part of its token before the colon. Limits and stored
/// file_ids are keyed by it, never by the secret token.
pub fn bot_id_of(token: &str) -> Option<&str> {
    let (id, secret) = token.split_once(':')?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && secret.len() >= 8).then_some(id)
}

/// A bot to send through: its public id (limits and file_ids are keyed by it) and token.
/// Either the configured `telegram.bot_token` or one a tenant registered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelegramBot {
    pub id: String,
    pub token: crate::secret::Secret,
}

/// The longest text of a web push message. A push service takes at most 4096 bytes of
/// encrypted payload; the JSON around the text and the encryption header take the rest.
pub const MAX_PUSH_TEXT_CHARS: u32 = 1000;

/// A browser's push subscription, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub id: i64,
    pub endpoint: String,
    /// The browser's P-256 public key, base64url (65 bytes uncompressed).
    pub p256dh: String,
    /// The browser's authentication secret, base64url (16 bytes).
    pub auth: String,
}
