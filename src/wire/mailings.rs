//! A mailing as the API takes it (`POST`/`PUT /api/v1/mailings`) and answers it.

use super::rules::{PriorityName, TagName};
use crate::domain::{AudienceFilter, ChannelKind, InvalidInput, Priority, invalid};
use crate::store::{Mailing, MediaUpload, NewMailing, StateCounts};
use crate::telegram::{
    AlbumItem, MediaSource, ParseMode, TelegramContent, TelegramKind, UrlButton,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A mailing as sent to create or replace one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailingInput {
    /// The message; a template over client fields and attributes: `Hi {{ name }}`.
    pub text: String,
    /// `sms` (default), `email`, `telegram`, `webpush`, `inapp` or `log`.
    #[serde(default = "default_channel")]
    #[schema(value_type = crate::domain::ChannelKind)]
    pub channel: String,
    /// Clients with any of these tags.
    #[serde(default)]
    #[schema(value_type = Vec<TagName>)]
    pub tags: Vec<String>,
    /// Clients of any of these operator codes (with tags: clients matching both).
    #[serde(default)]
    pub operator_codes: Vec<String>,
    /// `all`: every client, asked for explicitly; then tags and operator codes stay empty. A
    /// mailing with neither a filter nor this is refused (422).
    pub audience: Option<AudienceChoice>,
    /// `high`, `medium` (default) or `low`.
    #[serde(default = "default_priority")]
    #[schema(value_type = PriorityName)]
    pub priority: String,
    /// RFC 3339; default now.
    pub start_at: Option<DateTime<Utc>>,
    /// RFC 3339; default start + mailing.default_window_hours.
    pub end_at: Option<DateTime<Utc>>,
    /// "HH:MM-HH:MM": send only within these hours of each recipient's own day.
    pub local_hours: Option<String>,
    /// Email: the subject, a template like the text (required for email).
    pub subject: Option<String>,
    /// Email: the HTML body, a template like the text, sent beside the text.
    pub html: Option<String>,
    /// Telegram: the kind of message, its media and options (absent: a text message).
    pub telegram: Option<TelegramInput>,
}

/// An audience asked for by name rather than by filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudienceChoice {
    /// Every client of the tenant (reachable on the channel).
    All,
}

/// What a Telegram mailing sends beside its text (the caption of a media message).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramInput {
    /// text, photo, video, voice, video_note, animation, document or media_group
    pub kind: TelegramKind,
    /// Required for every kind but text and media_group.
    pub media: Option<MediaInput>,
    /// A media_group's items, 2 to 10: photos and videos, or documents only. The text is the
    /// album's caption.
    #[serde(default)]
    pub album: Vec<AlbumItemInput>,
    /// html or markdownv2; absent: plain text.
    pub parse_mode: Option<ParseMode>,
    /// Preview the first link of a text message (default true).
    #[serde(default = "default_true")]
    pub link_preview: bool,
    /// Rows of link buttons under the message.
    #[serde(default)]
    pub buttons: Vec<Vec<UrlButton>>,
    /// A paid broadcast: up to telegram.paid_per_second instead of ~30/s (charged in Stars).
    #[serde(default)]
    pub allow_paid_broadcast: bool,
    /// The name of one of your registered bots to send through; absent: the default bot.
    pub bot: Option<String>,
}

/// One photo, video or document of an album.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlbumItemInput {
    /// photo, video or document
    pub kind: TelegramKind,
    pub media: MediaInput,
}

/// A media file: `{"url": …}`, `{"file_id": …}` or `{"file": {"name": …, "base64": …}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaInput {
    Url(String),
    FileId(String),
    File(FileInput),
}

/// A file sent inline; it is stored with the mailing and uploaded to Telegram once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    pub name: String,
    /// The file's bytes, standard base64.
    pub base64: String,
}

/// A mailing with its message counts per state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MailingView {
    #[serde(flatten)]
    pub mailing: Mailing,
    pub counts: StateCounts,
}

fn default_true() -> bool {
    true
}

fn default_channel() -> String {
    "sms".into()
}

fn default_priority() -> String {
    "medium".into()
}

impl MediaInput {
    /// The medium as stored: a file given inline joins `uploads` and is named by its place
    /// there until it is stored.
    fn into_source(
        self,
        uploads: &mut Vec<MediaUpload>,
        max_upload_bytes: u64,
    ) -> Result<MediaSource, InvalidInput> {
        Ok(match self {
            MediaInput::Url(url) => MediaSource::Url(url),
            MediaInput::FileId(id) => MediaSource::FileId(id),
            MediaInput::File(file) => {
                let content = base64::engine::general_purpose::STANDARD
                    .decode(file.base64.trim())
                    .map_err(|e| invalid(format!("media file: not base64: {e}")))?;
                if content.is_empty() || content.len() as u64 > max_upload_bytes {
                    return Err(invalid(format!(
                        "media file: {} bytes; it must have 1 to {max_upload_bytes} (telegram.max_upload_bytes)",
                        content.len()
                    )));
                }
                let name = file.name.trim();
                if name.is_empty() || name.contains(['/', '\\']) {
                    return Err(invalid("media file: give a plain file name"));
                }
                MediaUpload {
                    file_name: name.to_string(),
                    content,
                }
                .append_to(uploads)
            }
        })
    }

    /// `source` as sent: a file given with the mailing travels inline.
    fn from_source(
        source: &MediaSource,
        uploads: &[MediaUpload],
    ) -> Result<MediaInput, InvalidInput> {
        if let Some(index) = source.pending_index() {
            let upload = uploads
                .get(index)
                .ok_or_else(|| invalid(format!("media file {} was not given", index + 1)))?;
            return Ok(MediaInput::File(FileInput {
                name: upload.file_name.clone(),
                base64: base64::engine::general_purpose::STANDARD.encode(&upload.content),
            }));
        }
        match source {
            MediaSource::Url(url) => Ok(MediaInput::Url(url.clone())),
            MediaSource::FileId(id) => Ok(MediaInput::FileId(id.clone())),
            MediaSource::Upload(_) => Err(invalid(
                "a media file stored on this blast cannot be named on another: give the file",
            )),
        }
    }
}

impl TelegramInput {
    fn into_content(
        self,
        max_upload_bytes: u64,
    ) -> Result<(TelegramContent, Vec<MediaUpload>), InvalidInput> {
        let mut uploads = Vec::new();
        let media = self
            .media
            .map(|m| m.into_source(&mut uploads, max_upload_bytes))
            .transpose()?;
        let album = self
            .album
            .into_iter()
            .map(|item| {
                Ok(AlbumItem {
                    kind: item.kind,
                    media: item.media.into_source(&mut uploads, max_upload_bytes)?,
                })
            })
            .collect::<Result<Vec<_>, InvalidInput>>()?;
        Ok((
            TelegramContent {
                kind: self.kind,
                media,
                album,
                parse_mode: self.parse_mode,
                link_preview: self.link_preview,
                buttons: self.buttons,
                allow_paid_broadcast: self.allow_paid_broadcast,
                bot: self.bot,
            },
            uploads,
        ))
    }

    fn from_content(
        content: &TelegramContent,
        uploads: &[MediaUpload],
    ) -> Result<TelegramInput, InvalidInput> {
        Ok(TelegramInput {
            kind: content.kind,
            media: content
                .media
                .as_ref()
                .map(|m| MediaInput::from_source(m, uploads))
                .transpose()?,
            album: content
                .album
                .iter()
                .map(|item| {
                    Ok(AlbumItemInput {
                        kind: item.kind,
                        media: MediaInput::from_source(&item.media, uploads)?,
                    })
                })
                .collect::<Result<_, InvalidInput>>()?,
            parse_mode: content.parse_mode,
            link_preview: content.link_preview,
            buttons: content.buttons.clone(),
            allow_paid_broadcast: content.allow_paid_broadcast,
            bot: content.bot.clone(),
        })
    }
}

impl MailingInput {
    /// The mailing asked for: the window defaults to now and `default_window_hours`; files
    /// given inline are at most `max_upload_bytes` each.
    pub fn into_new_mailing(
        self,
        default_window_hours: u32,
        max_upload_bytes: u64,
    ) -> Result<NewMailing, InvalidInput> {
        let start_at = self
            .start_at
            .map_or_else(crate::now_ms, |t| t.timestamp_millis());
        let end_at = self.end_at.map_or(
            start_at + i64::from(default_window_hours) * 3_600_000,
            |t| t.timestamp_millis(),
        );
        let filter = AudienceFilter::requested(
            &self.tags,
            &self.operator_codes,
            self.audience == Some(AudienceChoice::All),
        )
        .map_err(|e| e.at("tags"))?;
        let (telegram, uploads) = match self.telegram {
            Some(input) => {
                let (content, uploads) = input
                    .into_content(max_upload_bytes)
                    .map_err(|e| e.at("telegram"))?;
                (Some(content), uploads)
            }
            None => (None, Vec::new()),
        };
        Ok(NewMailing {
            channel: self
                .channel
                .parse::<ChannelKind>()
                .map_err(|e| e.at("channel"))?,
            text: self.text,
            filter,
            priority: self
                .priority
                .parse::<Priority>()
                .map_err(|e| invalid(e).at("priority"))?,
            start_at,
            end_at,
            local_hours: self
                .local_hours
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: InvalidInput| e.at("local_hours"))?,
            subject: self.subject,
            html: self.html,
            telegram,
            uploads,
        })
    }

    /// `new` as sent to a remote blast: its window in RFC 3339, its files inline.
    pub fn from_new_mailing(new: &NewMailing) -> Result<MailingInput, InvalidInput> {
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms).ok_or_else(|| invalid(format!("{ms} is no time")))
        };
        Ok(MailingInput {
            text: new.text.clone(),
            channel: new.channel.as_str().to_string(),
            tags: new.filter.tags.clone(),
            operator_codes: new.filter.operator_codes.clone(),
            // A mailing has an empty filter only when every client was asked for.
            audience: (new.filter == AudienceFilter::default()).then_some(AudienceChoice::All),
            priority: new.priority.as_str().to_string(),
            start_at: Some(time(new.start_at)?),
            end_at: Some(time(new.end_at)?),
            local_hours: new.local_hours.map(|h| h.to_string()),
            subject: new.subject.clone(),
            html: new.html.clone(),
            telegram: new
                .telegram
                .as_ref()
                .map(|content| TelegramInput::from_content(content, &new.uploads))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LocalHours;

    /// What the CLI sends a remote blast is what the API turns back into the same mailing.
    #[test]
    fn a_mailing_crosses_the_wire_unchanged() {
        let mut uploads = Vec::new();
        let photo = MediaUpload {
            file_name: "p.jpg".into(),
            content: vec![1, 2, 3],
        }
        .append_to(&mut uploads);
        let new = NewMailing {
            filter: AudienceFilter {
                tags: vec!["vip".into()],
                operator_codes: vec!["900".into()],
            },
            priority: Priority::High,
            local_hours: Some("09:00-21:00".parse::<LocalHours>().expect("hours")),
            telegram: Some(TelegramContent {
                kind: TelegramKind::MediaGroup,
                album: vec![
                    AlbumItem {
                        kind: TelegramKind::Photo,
                        media: photo,
                    },
                    AlbumItem {
                        kind: TelegramKind::Photo,
                        media: MediaSource::Url("https://example.com/a.jpg".into()),
                    },
                ],
                bot: Some("shop".into()),
                ..TelegramContent::text_message()
            }),
            uploads,
            ..NewMailing::new(ChannelKind::Telegram, "Hi {{ name }}", 1_000, 3_601_000)
        };
        let json = serde_json::to_string(&MailingInput::from_new_mailing(&new).expect("input"))
            .expect("json");
        let back: MailingInput = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.into_new_mailing(1, 1 << 20).expect("mailing"), new);
    }

    #[test]
    fn every_client_is_asked_for_by_name() {
        let new = NewMailing::new(ChannelKind::Sms, "Hi", 1_000, 2_000);
        let input = MailingInput::from_new_mailing(&new).expect("input");
        assert_eq!(input.audience, Some(AudienceChoice::All));
        let back = input.into_new_mailing(1, 1).expect("mailing");
        assert_eq!(back, new);
    }
}
