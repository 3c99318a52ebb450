//! Document-only types: the rules the server applies to plain strings, as schemas.

use utoipa::ToSchema;

/// A phone as people type it: E.164 (`+44 20 7946 0958`), `79001234567`, or a national
/// number of `phones.default_region` (`8 900 123-45-67`); stored as E.164 digits.
#[derive(ToSchema)]
#[schema(pattern = r"^\s*\+?[0-9 ().-]{3,32}\s*$")]
pub struct PhoneNumber(#[allow(dead_code)] String);

/// A tag: 1 to 64 letters, digits, `-`, `_`, `.` or `:`.
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9_.:\-]{1,64}$")]
pub struct TagName(#[allow(dead_code)] String);

/// A registered bot's name: 1 to 64 of a-z, 0-9, `-` and `_`.
#[derive(ToSchema)]
#[schema(pattern = r"^[a-z0-9_\-]{1,64}$")]
pub struct BotName(#[allow(dead_code)] String);

/// A priority lane.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PriorityName {
    High,
    Medium,
    Low,
}
