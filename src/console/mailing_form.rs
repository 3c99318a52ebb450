//! The console's mailing form: a new mailing, or an edit of one that has not started, with a
//! live audience count, expected duration and a preview of the text for a sample client. The
//! form becomes the API's own request (`wire::MailingInput`) and goes through the same use
//! case (`app::mailings`), so every rule is the API's; an error the rules name a field for is
//! shown beside that field, and nothing is stored until the form passes.

use super::pages::Form as FormView;
use super::session::{SignedIn, csrf_matches};
use super::{ConsoleError, ConsoleState, PageResult, own_mailing};
use crate::domain::{ChannelKind, InvalidInput, MailingState, invalid};
use crate::store::{ConsoleSession, Mailing, StoreError};
use crate::telegram::{MediaSource, TelegramKind};
use crate::wire::mailings::{
    AlbumItemInput, AudienceChoice, MailingInput, MediaInput, TelegramInput,
};
use axum::Form;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/mailings/new", get(new_page).post(create))
        .route("/mailings/new/preview", post(preview))
        .route("/mailings/{id}/edit", get(edit_page).post(update))
}

/// The form's fields as the browser posts them. Every one may be missing (an unchecked box,
/// a section of another channel that the page's script disabled).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub(super) struct MailingForm {
    #[serde(skip_serializing)]
    pub csrf: String,
    pub channel: String,
    pub text: String,
    pub subject: String,
    pub html: String,
    /// Tags and operator codes, separated by commas or spaces.
    pub tags: String,
    pub operator_codes: String,
    /// "on": every client, asked for explicitly.
    pub everyone: Option<String>,
    pub priority: String,
    /// `datetime-local` values, read as UTC; empty: now, and start + the default window.
    pub start_at: String,
    pub end_at: String,
    pub local_hours: String,
    pub tg_kind: String,
    /// A URL Telegram fetches, or a file_id it already has.
    pub tg_media: String,
    /// One album item a line: `KIND:MEDIA`, as `blast mailing create --album` takes them.
    pub tg_album: String,
    pub tg_parse_mode: String,
    pub tg_link_preview: Option<String>,
    /// One button a line: `LABEL=URL`, as `--button` takes them; each its own row.
    pub tg_buttons: String,
    pub tg_bot: String,
    pub tg_paid: Option<String>,
}

/// The words of a list field: split at commas, spaces and line ends.
fn words(list: &str) -> Vec<String> {
    list.split([',', ' ', '\n', '\r', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn given(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// A `datetime-local` value (to the minute or the second), read as UTC.
fn moment(value: &str, field: &'static str) -> Result<Option<DateTime<Utc>>, InvalidInput> {
    let Some(value) = given(value) else {
        return Ok(None);
    };
    NaiveDateTime::parse_from_str(&value, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(&value, "%Y-%m-%dT%H:%M:%S"))
        .map(|t| Some(t.and_utc()))
        .map_err(|_| {
            invalid(format!(
                "{value:?} is no date and time: give one such as 2026-12-24T09:00 (UTC)"
            ))
            .at(field)
        })
}

/// A medium as typed: a URL Telegram fetches, else a file_id it already has.
fn medium(value: &str) -> MediaInput {
    if value.starts_with("https://") || value.starts_with("http://") {
        MediaInput::Url(value.to_owned())
    } else {
        MediaInput::FileId(value.to_owned())
    }
}

fn telegram_kind(value: &str) -> Result<TelegramKind, InvalidInput> {
    serde_json::from_value(serde_json::Value::String(value.trim().to_owned()))
        .map_err(|_| invalid(format!("unknown kind of Telegram message {value:?}")).at("telegram"))
}

impl MailingForm {
    /// The API's request for this form.
    pub(super) fn to_input(&self) -> Result<MailingInput, InvalidInput> {
        let channel = given(&self.channel).unwrap_or_else(|| "sms".into());
        let telegram = if channel == ChannelKind::Telegram.as_str() {
            let kind = match given(&self.tg_kind) {
                Some(kind) => telegram_kind(&kind)?,
                None => TelegramKind::Text,
            };
            let mut album = Vec::new();
            for line in self.tg_album.lines().filter_map(given) {
                let (kind, media) = line.split_once(':').ok_or_else(|| {
                    invalid(format!("album item {line:?}: write KIND:MEDIA, e.g. photo:https://example.com/a.jpg")).at("telegram")
                })?;
                album.push(AlbumItemInput {
                    kind: telegram_kind(kind)?,
                    media: medium(media.trim()),
                });
            }
            let mut buttons = Vec::new();
            for line in self.tg_buttons.lines().filter_map(given) {
                buttons.push(vec![
                    line.parse().map_err(|e: InvalidInput| e.at("telegram"))?,
                ]);
            }
            Some(TelegramInput {
                kind,
                media: given(&self.tg_media).map(|m| medium(&m)),
                album,
                parse_mode: given(&self.tg_parse_mode)
                    .map(|m| m.parse())
                    .transpose()
                    .map_err(|e: InvalidInput| e.at("telegram"))?,
                link_preview: self.tg_link_preview.is_some(),
                buttons,
                allow_paid_broadcast: self.tg_paid.is_some(),
                bot: given(&self.tg_bot),
            })
        } else {
            None
        };
        Ok(MailingInput {
            text: self.text.clone(),
            channel,
            tags: words(&self.tags),
            operator_codes: words(&self.operator_codes),
            audience: self.everyone.is_some().then_some(AudienceChoice::All),
            priority: given(&self.priority).unwrap_or_else(|| "medium".into()),
            start_at: moment(&self.start_at, "start_at")?,
            end_at: moment(&self.end_at, "end_at")?,
            local_hours: given(&self.local_hours),
            subject: given(&self.subject),
            html: given(&self.html),
            telegram,
        })
    }

    /// The form filled in with `mailing`, for its edit.
    fn of(mailing: &Mailing) -> MailingForm {
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
                .unwrap_or_default()
        };
        let source = |m: &MediaSource| match m {
            MediaSource::Url(url) => url.clone(),
            MediaSource::FileId(id) => id.clone(),
            // A stored file stays as it is unless another medium is given.
            MediaSource::Upload(_) => String::new(),
        };
        let tg = mailing.telegram.as_ref();
        MailingForm {
            csrf: String::new(),
            channel: mailing.channel.as_str().to_owned(),
            text: mailing.text.clone(),
            subject: mailing.subject.clone().unwrap_or_default(),
            html: mailing.html.clone().unwrap_or_default(),
            tags: mailing.filter.tags.join(", "),
            operator_codes: mailing.filter.operator_codes.join(", "),
            everyone: (mailing.filter.tags.is_empty() && mailing.filter.operator_codes.is_empty())
                .then(|| "on".into()),
            priority: mailing.priority.as_str().to_owned(),
            start_at: time(mailing.start_at),
            end_at: time(mailing.end_at),
            local_hours: mailing
                .local_hours
                .map(|h| h.to_string())
                .unwrap_or_default(),
            tg_kind: tg.map(|t| t.kind.as_str().to_owned()).unwrap_or_default(),
            tg_media: tg
                .and_then(|t| t.media.as_ref())
                .map(source)
                .unwrap_or_default(),
            tg_album: tg
                .map(|t| {
                    t.album
                        .iter()
                        .map(|a| format!("{}:{}", a.kind.as_str(), source(&a.media)))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            tg_parse_mode: tg
                .and_then(|t| t.parse_mode)
                .map(|m| match m {
                    crate::telegram::ParseMode::Html => "html",
                    crate::telegram::ParseMode::MarkdownV2 => "markdownv2",
                })
                .unwrap_or_default()
                .to_owned(),
            tg_link_preview: tg.is_none_or(|t| t.link_preview).then(|| "on".into()),
            tg_buttons: tg
                .map(|t| {
                    t.buttons
                        .iter()
                        .flatten()
                        .map(|b| format!("{}={}", b.text, b.url))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            tg_bot: tg.and_then(|t| t.bot.clone()).unwrap_or_default(),
            tg_paid: tg.filter(|t| t.allow_paid_broadcast).map(|_| "on".into()),
        }
    }

    /// A new mailing's form: an SMS to be sent now, Telegram's link previews on.
    fn blank() -> MailingForm {
        MailingForm {
            channel: "sms".into(),
            priority: "medium".into(),
            tg_link_preview: Some("on".into()),
            ..MailingForm::default()
        }
    }
}

/// The form as a page: `form`'s values, an error beside its field (or above the form), and
/// whether it edits mailing `editing` or makes a new one.
async fn render(
    state: &ConsoleState,
    session: &ConsoleSession,
    status: StatusCode,
    form: &MailingForm,
    error: Option<&InvalidInput>,
    editing: Option<i64>,
) -> PageResult {
    let bots = state.store.telegram_bots(session.user.id).await?;
    let names: Vec<String> = bots.into_iter().map(|b| b.name).collect();
    let view = FormView {
        form,
        error,
        editing,
        window_hours: state.settings.mailing.default_window_hours,
    };
    let page = state.pages.mailing_form(session, &view, &names)?;
    Ok((status, page).into_response())
}

async fn new_page(State(state): State<ConsoleState>, SignedIn(session): SignedIn) -> PageResult {
    let form = MailingForm::blank();
    render(&state, &session, StatusCode::OK, &form, None, None).await
}

/// What a submit of `form` answers: the stored mailing's page, or the form again with the
/// rule it broke (a conflict above the form); any other failure is the store's.
async fn saved_or_refused(
    state: &ConsoleState,
    session: &ConsoleSession,
    form: &MailingForm,
    editing: Option<i64>,
    stored: Result<Mailing, StoreError>,
) -> PageResult {
    let (status, error) = match stored {
        Ok(mailing) => {
            return Ok(Redirect::to(&format!("/mailings/{}", mailing.id)).into_response());
        }
        Err(StoreError::Invalid(e)) => (StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(StoreError::Conflict(why)) => (StatusCode::CONFLICT, invalid(why)),
        Err(other) => return Err(other.into()),
    };
    render(state, session, status, form, Some(&error), editing).await
}

/// The form's mailing as the use case takes it, or why not.
fn new_mailing(
    state: &ConsoleState,
    form: &MailingForm,
) -> Result<crate::store::NewMailing, InvalidInput> {
    form.to_input()?.into_new_mailing(
        state.settings.mailing.default_window_hours,
        state.settings.telegram.max_upload_bytes,
    )
}

async fn create(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Form(form): Form<MailingForm>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let stored = match new_mailing(&state, &form) {
        Ok(new) => {
            let limits = state.settings.text_limits(new.channel);
            crate::app::mailings::create(&state.store, session.user.id, new, limits).await
        }
        Err(e) => Err(StoreError::Invalid(e)),
    };
    saved_or_refused(&state, &session, &form, None, stored).await
}

/// The mailing `{id}` if it is the tenant's and may still be edited; else the page to show.
async fn editable(
    state: &ConsoleState,
    session: &ConsoleSession,
    id: &str,
) -> Result<Result<Mailing, axum::response::Response>, ConsoleError> {
    let Some(mailing) = own_mailing(state, session, id).await? else {
        return Ok(Err(super::not_found(state, session)?));
    };
    if mailing.state != MailingState::Scheduled {
        return Ok(Err(state.pages.notice(
            session,
            StatusCode::CONFLICT,
            "Not now",
            &format!(
                "Mailing {} is {}: only a mailing that has not started can be edited.",
                mailing.id, mailing.state
            ),
        )?));
    }
    Ok(Ok(mailing))
}

async fn edit_page(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let mailing = match editable(&state, &session, &id).await? {
        Ok(mailing) => mailing,
        Err(page) => return Ok(page),
    };
    let form = MailingForm::of(&mailing);
    render(
        &state,
        &session,
        StatusCode::OK,
        &form,
        None,
        Some(mailing.id.0),
    )
    .await
}

async fn update(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Form(form): Form<MailingForm>,
) -> PageResult {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(state.pages.csrf_refused(&session)?);
    }
    let mailing = match editable(&state, &session, &id).await? {
        Ok(mailing) => mailing,
        Err(page) => return Ok(page),
    };
    let stored = match new_mailing(&state, &form) {
        Ok(mut new) => {
            // A stored medium the form could not show stays, unless another was given.
            if let (Some(content), Some(before)) = (&mut new.telegram, &mailing.telegram)
                && content.media.is_none()
                && content.kind == before.kind
            {
                content.media = before.media.clone();
            }
            let limits = state.settings.text_limits(new.channel);
            crate::app::mailings::update(&state.store, session.user.id, mailing.id, new, limits)
                .await
        }
        Err(e) => Err(StoreError::Invalid(e)),
    };
    saved_or_refused(&state, &session, &form, Some(mailing.id.0), stored).await
}

/// What the form's live preview shows.
#[derive(Serialize)]
struct Preview {
    /// Clients the mailing would reach now.
    recipients: Option<i64>,
    /// Seconds it needs at the channel's configured rate.
    expected_duration_secs: Option<f64>,
    /// The text as the first of them would get it, or why it cannot be rendered.
    sample: Option<String>,
    sample_error: Option<String>,
    /// The first rule the form breaks now, and its field.
    error: Option<String>,
    field: Option<&'static str>,
}

/// The live preview: the audience, the expected duration, the sample text, and the first
/// rule the form breaks (the same checks as a submit; nothing is stored).
async fn preview(
    State(state): State<ConsoleState>,
    SignedIn(session): SignedIn,
    Form(form): Form<MailingForm>,
) -> Result<axum::response::Response, ConsoleError> {
    if !csrf_matches(&session, &form.csrf) {
        return Ok(StatusCode::FORBIDDEN.into_response());
    }
    let broken = |e: InvalidInput| Preview {
        recipients: None,
        expected_duration_secs: None,
        sample: None,
        sample_error: None,
        field: e.field(),
        error: Some(e.0),
    };
    let new = match new_mailing(&state, &form) {
        Ok(new) => new,
        Err(e) => return Ok(Json(broken(e)).into_response()),
    };
    let limits = state.settings.text_limits(new.channel);
    let rate = state.settings.send_rate_per_second(new.channel);
    let check =
        crate::app::mailings::check(&state.store, session.user.id, new.clone(), limits).await;
    let shown = match state
        .store
        .preview_mailing(session.user.id, &new, limits, rate)
        .await
    {
        Ok(shown) => shown,
        Err(StoreError::Invalid(e)) => return Ok(Json(broken(e)).into_response()),
        Err(e) => return Err(e.into()),
    };
    let (error, field) = match check {
        Ok(_) => (None, None),
        Err(StoreError::Invalid(e)) => (Some(e.0.clone()), e.field()),
        Err(StoreError::Conflict(why)) => (Some(why), None),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(Preview {
        recipients: Some(shown.recipients),
        expected_duration_secs: shown.expected_duration_secs,
        sample: shown.sample.as_ref().and_then(|s| s.text.clone()),
        sample_error: shown.sample.and_then(|s| s.error),
        error,
        field,
    })
    .into_response())
}
