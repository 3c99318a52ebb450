//! What a Telegram mailing sends: the kind of message, its media, parse mode, link preview
//! and inline buttons. Checked against the Bot API's rules when the mailing is created, so a
//! mailing that Telegram would refuse for every recipient is refused at once instead.

use crate::domain::{InvalidInput, invalid};
use serde::{Deserialize, Serialize};

/// The Bot API method a mailing uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TelegramKind {
    Text,
    Photo,
    Video,
    Voice,
    VideoNote,
    Animation,
    Document,
    /// An album (`sendMediaGroup`): 2 to 10 photos and videos, or 2 to 10 documents.
    MediaGroup,
}

impl TelegramKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TelegramKind::Text => "text",
            TelegramKind::Photo => "photo",
            TelegramKind::Video => "video",
            TelegramKind::Voice => "voice",
            TelegramKind::VideoNote => "video_note",
            TelegramKind::Animation => "animation",
            TelegramKind::Document => "document",
            TelegramKind::MediaGroup => "media_group",
        }
    }
}

/// Where a media file comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
    /// An HTTP(S) URL Telegram fetches itself.
    Url(String),
    /// A file Telegram already has (valid only for the bot that uploaded it).
    FileId(String),
    /// A file stored with the mailing (`media_files.id`): uploaded by the first send, then
    /// sent to everyone else by the file_id Telegram returned.
    Upload(i64),
}

impl MediaSource {
    /// The n-th file given with a mailing that is not stored yet: a new mailing names its
    /// files so until they get their `media_files` ids (which are positive).
    pub fn pending_upload(index: usize) -> MediaSource {
        MediaSource::Upload(-(index as i64))
    }

    /// Which file given with a new mailing this names, if it names one.
    pub fn pending_index(&self) -> Option<usize> {
        match *self {
            MediaSource::Upload(n) if n <= 0 => {
                n.checked_neg().and_then(|i| usize::try_from(i).ok())
            }
            _ => None,
        }
    }
}

/// How Telegram reads the text or caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParseMode {
    Html,
    #[serde(rename = "markdownv2")]
    MarkdownV2,
}

impl std::str::FromStr for ParseMode {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "html" => Ok(ParseMode::Html),
            "markdownv2" | "markdown_v2" => Ok(ParseMode::MarkdownV2),
            other => Err(invalid(format!(
                "unknown parse mode {other:?}: expected html or markdownv2"
            ))),
        }
    }
}

/// An inline keyboard button that opens a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UrlButton {
    pub text: String,
    pub url: String,
}

impl std::str::FromStr for UrlButton {
    type Err = InvalidInput;
    /// `Label=https://…`, as the CLI takes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (text, url) = s
            .split_once('=')
            .ok_or_else(|| invalid(format!("button {s:?}: expected LABEL=URL")))?;
        Ok(UrlButton {
            text: text.trim().to_string(),
            url: url.trim().to_string(),
        })
    }
}

/// One photo, video or document of an album.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlbumItem {
    /// photo, video or document
    pub kind: TelegramKind,
    pub media: MediaSource,
}

/// How many items an album has, at least and at most (the Bot API's bounds).
pub const ALBUM_ITEMS: std::ops::RangeInclusive<usize> = 2..=10;

/// Everything about a Telegram mailing beyond its text (which is the caption of a media
/// message). Stored as JSON with the mailing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TelegramContent {
    pub kind: TelegramKind,
    /// Required for every kind but `text` and `media_group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaSource>,
    /// The items of a `media_group`, in order; the text is the first one's caption.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub album: Vec<AlbumItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_mode: Option<ParseMode>,
    /// Show a preview of the first link in a text message (Telegram's default).
    #[serde(default = "yes")]
    pub link_preview: bool,
    /// Rows of link buttons under the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<UrlButton>>,
    /// Telegram's paid broadcast: up to `telegram.paid_per_second` instead of the free ~30/s,
    /// each message past the free rate charged in Stars to the bot's balance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_paid_broadcast: bool,
    /// The tenant's registered bot this mailing goes out through (`blast telegram-bot add`);
    /// absent: the configured `telegram.bot_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
}

fn yes() -> bool {
    true
}

/// The Bot API's limits on a text message and on a caption, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
pub const MAX_CAPTION_CHARS: usize = 1024;

impl TelegramContent {
    pub fn text_message() -> TelegramContent {
        TelegramContent {
            kind: TelegramKind::Text,
            media: None,
            album: Vec::new(),
            parse_mode: None,
            link_preview: true,
            buttons: Vec::new(),
            allow_paid_broadcast: false,
            bot: None,
        }
    }

    /// Refuse what Telegram would refuse for every recipient. `text` is the template of the
    /// message or caption; its length is checked again once rendered.
    pub fn validate(&self, text: &str) -> Result<(), InvalidInput> {
        if self.kind == TelegramKind::MediaGroup {
            return self.validate_album(text);
        }
        if !self.album.is_empty() {
            return Err(invalid(
                "album items are for a media_group; give a single medium as `media`",
            ));
        }
        let chars = text.chars().count();
        match (self.kind, &self.media) {
            (TelegramKind::Text, Some(_)) => {
                return Err(invalid(
                    "a text message takes no media: choose photo, video, voice, video_note, animation or document",
                ));
            }
            (TelegramKind::Text, None) => {
                if text.trim().is_empty() {
                    return Err(invalid("the message text is empty"));
                }
                if chars > MAX_TEXT_CHARS {
                    return Err(invalid(format!(
                        "the message text has {chars} characters; Telegram takes at most {MAX_TEXT_CHARS}"
                    )));
                }
            }
            (kind, None) => {
                return Err(invalid(format!(
                    "a {} message needs its media: a URL, a Telegram file_id or a file",
                    kind.as_str()
                )));
            }
            (TelegramKind::VideoNote, Some(_)) if !text.trim().is_empty() => {
                return Err(invalid("a video note has no caption: leave the text empty"));
            }
            (_, Some(media)) => {
                check_caption(text)?;
                validate_source(media)?;
            }
        }
        self.validate_options()
    }

    /// The checks of an album: 2 to 10 items, photos and videos or documents only, no
    /// buttons (`sendMediaGroup` takes no keyboard).
    fn validate_album(&self, text: &str) -> Result<(), InvalidInput> {
        if self.media.is_some() {
            return Err(invalid(
                "a media_group takes its media as album items, not as `media`",
            ));
        }
        let count = self.album.len();
        if !ALBUM_ITEMS.contains(&count) {
            return Err(invalid(format!(
                "an album has {} to {} items; this one has {count}",
                ALBUM_ITEMS.start(),
                ALBUM_ITEMS.end()
            )));
        }
        let documents = self
            .album
            .iter()
            .filter(|item| item.kind == TelegramKind::Document)
            .count();
        for item in &self.album {
            if !matches!(
                item.kind,
                TelegramKind::Photo | TelegramKind::Video | TelegramKind::Document
            ) {
                return Err(invalid(format!(
                    "an album holds photos, videos or documents, not a {}",
                    item.kind.as_str()
                )));
            }
            validate_source(&item.media)?;
        }
        if documents != 0 && documents != count {
            return Err(invalid(
                "an album of documents holds only documents; photos and videos go in another",
            ));
        }
        check_caption(text)?;
        if !self.buttons.is_empty() {
            return Err(invalid(
                "an album takes no buttons: Telegram's sendMediaGroup has no keyboard",
            ));
        }
        self.validate_options()
    }

    /// The media files this content sends, in order: the single medium or the album's items.
    pub fn sources(&self) -> impl Iterator<Item = &MediaSource> {
        self.media
            .iter()
            .chain(self.album.iter().map(|item| &item.media))
    }

    /// The media files this content sends, to be rewritten (stored files get their ids).
    pub fn sources_mut(&mut self) -> impl Iterator<Item = &mut MediaSource> {
        self.media
            .iter_mut()
            .chain(self.album.iter_mut().map(|item| &mut item.media))
    }

    /// How many messages one send of this content is to Telegram's limits: an album counts
    /// each of its items.
    pub fn message_count(&self) -> u32 {
        if self.kind == TelegramKind::MediaGroup {
            self.album.len().max(1) as u32
        } else {
            1
        }
    }

    fn validate_options(&self) -> Result<(), InvalidInput> {
        if !self.link_preview && self.kind != TelegramKind::Text {
            return Err(invalid(
                "link previews apply to text messages only; drop the option for media",
            ));
        }
        let count: usize = self.buttons.iter().map(Vec::len).sum();
        if count > 100 {
            return Err(invalid(format!(
                "{count} buttons; Telegram takes at most 100"
            )));
        }
        for button in self.buttons.iter().flatten() {
            if button.text.trim().is_empty() {
                return Err(invalid("a button needs a label"));
            }
            if !(is_web_url(&button.url) || button.url.starts_with("tg://")) {
                return Err(invalid(format!(
                    "button {:?}: the link must start with http://, https:// or tg://",
                    button.text
                )));
            }
        }
        Ok(())
    }
}

fn check_caption(text: &str) -> Result<(), InvalidInput> {
    let chars = text.chars().count();
    if chars > MAX_CAPTION_CHARS {
        return Err(invalid(format!(
            "the caption has {chars} characters; Telegram takes at most {MAX_CAPTION_CHARS}"
        )));
    }
    Ok(())
}

fn validate_source(media: &MediaSource) -> Result<(), InvalidInput> {
    match media {
        MediaSource::Url(url) if !is_web_url(url) => Err(invalid(format!(
            "media URL {url:?} must start with http:// or https://"
        ))),
        MediaSource::FileId(id) if id.trim().is_empty() || id.contains(char::is_whitespace) => {
            Err(invalid(format!("{id:?} is not a Telegram file_id")))
        }
        _ => Ok(()),
    }
}

fn is_web_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && url.len() > "https://".len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(kind: TelegramKind, media: Option<MediaSource>) -> TelegramContent {
        TelegramContent {
            kind,
            media,
            ..TelegramContent::text_message()
        }
    }

    #[test]
    fn media_kinds_need_media_and_text_takes_none() {
        assert!(with(TelegramKind::Photo, None).validate("hi").is_err());
        assert!(
            with(TelegramKind::Text, Some(MediaSource::FileId("x".into())))
                .validate("hi")
                .is_err()
        );
        assert!(
            with(TelegramKind::Photo, Some(MediaSource::Upload(1)))
                .validate("")
                .is_ok()
        );
        assert!(with(TelegramKind::Text, None).validate(" ").is_err());
    }

    #[test]
    fn bot_api_limits_are_checked() {
        let long = "x".repeat(MAX_CAPTION_CHARS + 1);
        let photo = with(TelegramKind::Photo, Some(MediaSource::Upload(1)));
        assert!(photo.validate(&long).is_err());
        assert!(with(TelegramKind::Text, None).validate(&long).is_ok());
        let note = with(TelegramKind::VideoNote, Some(MediaSource::Upload(1)));
        assert!(note.validate("caption").is_err());
        let bad_url = with(
            TelegramKind::Photo,
            Some(MediaSource::Url("ftp://x".into())),
        );
        assert!(bad_url.validate("").is_err());
    }

    #[test]
    fn buttons_parse_and_need_links() {
        let button: UrlButton = "Shop = https://shop.test/a=b".parse().expect("a button");
        assert_eq!(button.text, "Shop");
        assert_eq!(button.url, "https://shop.test/a=b");
        assert!("no equals sign".parse::<UrlButton>().is_err());
        let mut content = TelegramContent::text_message();
        content.buttons = vec![vec![UrlButton {
            text: "x".into(),
            url: "javascript:alert(1)".into(),
        }]];
        assert!(content.validate("hi").is_err());
    }

    #[test]
    fn albums_hold_two_to_ten_photos_and_videos_or_only_documents() {
        let item = |kind, id: &str| AlbumItem {
            kind,
            media: MediaSource::FileId(id.into()),
        };
        let album = |items: Vec<AlbumItem>| TelegramContent {
            kind: TelegramKind::MediaGroup,
            album: items,
            ..TelegramContent::text_message()
        };
        let mixed = album(vec![
            item(TelegramKind::Photo, "a"),
            item(TelegramKind::Video, "b"),
        ]);
        assert!(mixed.validate("caption").is_ok());
        assert_eq!(mixed.message_count(), 2);
        assert!(
            album(vec![item(TelegramKind::Photo, "a")])
                .validate("")
                .is_err(),
            "one item is not an album"
        );
        assert!(
            album(
                (0..11)
                    .map(|i| item(TelegramKind::Photo, &i.to_string()))
                    .collect()
            )
            .validate("")
            .is_err()
        );
        assert!(
            album(vec![
                item(TelegramKind::Photo, "a"),
                item(TelegramKind::Document, "b")
            ])
            .validate("")
            .is_err(),
            "documents do not mix"
        );
        assert!(
            album(vec![
                item(TelegramKind::Voice, "a"),
                item(TelegramKind::Voice, "b")
            ])
            .validate("")
            .is_err()
        );
        let mut with_buttons = mixed.clone();
        with_buttons.buttons = vec![vec![UrlButton {
            text: "x".into(),
            url: "https://x.test".into(),
        }]];
        assert!(with_buttons.validate("").is_err());
        let mut stray = TelegramContent::text_message();
        stray.album = mixed.album.clone();
        assert!(
            stray.validate("hi").is_err(),
            "album items on a text message"
        );
    }

    #[test]
    fn stored_json_reads_back() {
        let content = TelegramContent {
            kind: TelegramKind::Video,
            media: Some(MediaSource::Url("https://x.test/v.mp4".into())),
            album: vec![],
            parse_mode: Some(ParseMode::MarkdownV2),
            link_preview: true,
            buttons: vec![],
            allow_paid_broadcast: false,
            bot: None,
        };
        let json = serde_json::to_string(&content).expect("json");
        assert!(
            json.contains(r#""media":{"url":"https://x.test/v.mp4"}"#),
            "{json}"
        );
        assert!(json.contains(r#""parse_mode":"markdownv2""#), "{json}");
        assert_eq!(
            serde_json::from_str::<TelegramContent>(&json).expect("read back"),
            content
        );
    }
}
