//! A client as the API takes it (`POST`/`PUT`/`PATCH /api/v1/clients`), and the answer to a
//! bulk import.

use super::rules::{PhoneNumber, TagName};
use crate::domain::{InvalidInput, parse_attribute_name, parse_email, parse_tags, parse_timezone};
use crate::store::{ClientPatch, NewClient};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A client as sent to create or replace one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    /// E.164 (+79001234567), 79001234567, or national (89001234567); stored as 79001234567.
    #[schema(value_type = PhoneNumber)]
    pub phone: String,
    #[serde(default)]
    pub name: String,
    pub email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    /// IANA zone; UTC when absent.
    pub timezone: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<TagName>)]
    pub tags: Vec<String>,
    /// Free-form values for templates.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Changes to a client: absent fields stay; `null` clears email or telegram_chat_id.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatchInput {
    #[schema(value_type = Option<PhoneNumber>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub telegram_chat_id: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Replace all tags.
    #[schema(value_type = Option<Vec<TagName>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Vec<TagName>)]
    pub add_tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<TagName>)]
    pub remove_tags: Vec<String>,
    /// Set attributes; a `null` value removes one.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Option<String>>)]
    pub attributes: BTreeMap<String, Option<String>>,
}

/// A field that may be absent (None), null (Some(None)) or set (Some(Some)).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The answer to a bulk import.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    pub imported: u64,
    pub inserted: u64,
    pub updated: u64,
    /// The first row errors in line order (at most `api.import_max_errors`).
    pub errors: Vec<RowErrorView>,
    /// All row errors, listed or not.
    pub error_count: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RowErrorView {
    pub line: u64,
    pub message: String,
}

fn attributes<V>(given: BTreeMap<String, V>) -> Result<BTreeMap<String, V>, InvalidInput> {
    given
        .into_iter()
        .map(|(k, v)| Ok((parse_attribute_name(&k)?, v)))
        .collect()
}

impl ClientInput {
    /// The client asked for, every field checked.
    pub fn into_new_client(self) -> Result<NewClient, InvalidInput> {
        Ok(NewClient {
            phone: Some(self.phone.parse()?),
            name: self.name,
            email: self.email.as_deref().map(parse_email).transpose()?,
            telegram_chat_id: self.telegram_chat_id,
            timezone: match self.timezone {
                Some(tz) => parse_timezone(&tz)?,
                None => "UTC".into(),
            },
            tags: parse_tags(&self.tags)?,
            attributes: attributes(self.attributes)?,
        })
    }

    /// `client` as sent to a remote blast.
    pub fn from_new_client(client: &NewClient) -> ClientInput {
        ClientInput {
            phone: client
                .phone
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            name: client.name.clone(),
            email: client.email.clone(),
            telegram_chat_id: client.telegram_chat_id,
            timezone: Some(client.timezone.clone()),
            tags: client.tags.clone(),
            attributes: client.attributes.clone(),
        }
    }
}

impl ClientPatchInput {
    /// The changes asked for, every field checked.
    pub fn into_patch(self) -> Result<ClientPatch, InvalidInput> {
        Ok(ClientPatch {
            phone: self.phone.as_deref().map(str::parse).transpose()?,
            name: self.name,
            email: self
                .email
                .map(|e| e.as_deref().map(parse_email).transpose())
                .transpose()?,
            telegram_chat_id: self.telegram_chat_id,
            timezone: self.timezone.as_deref().map(parse_timezone).transpose()?,
            tags: self.tags.as_deref().map(parse_tags).transpose()?,
            add_tags: parse_tags(&self.add_tags)?,
            remove_tags: parse_tags(&self.remove_tags)?,
            attributes: attributes(self.attributes)?,
        })
    }

    /// `patch` as sent to a remote blast.
    pub fn from_patch(patch: &ClientPatch) -> ClientPatchInput {
        ClientPatchInput {
            phone: patch.phone.as_ref().map(ToString::to_string),
            name: patch.name.clone(),
            email: patch.email.clone(),
            telegram_chat_id: patch.telegram_chat_id,
            timezone: patch.timezone.clone(),
            tags: patch.tags.clone(),
            add_tags: patch.add_tags.clone(),
            remove_tags: patch.remove_tags.clone(),
            attributes: patch.attributes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the CLI sends a remote blast is what the API turns back into the same value.
    #[test]
    fn a_client_and_a_patch_cross_the_wire_unchanged() {
        let client = NewClient {
            phone: Some("+7 900 123-45-67".parse().expect("phone")),
            name: "Ann".into(),
            email: Some("ann@example.com".into()),
            telegram_chat_id: Some(42),
            timezone: "Europe/Moscow".into(),
            tags: vec!["vip".into()],
            attributes: BTreeMap::from([("city".into(), "Riga".into())]),
        };
        let json = serde_json::to_string(&ClientInput::from_new_client(&client)).expect("json");
        let back: ClientInput = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.into_new_client().expect("client"), client);

        let patch = ClientPatch {
            email: Some(None),
            telegram_chat_id: Some(Some(7)),
            add_tags: vec!["new".into()],
            attributes: BTreeMap::from([("city".into(), None)]),
            ..ClientPatch::default()
        };
        let json = serde_json::to_string(&ClientPatchInput::from_patch(&patch)).expect("json");
        let back: ClientPatchInput = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.into_patch().expect("patch"), patch);
    }
}
