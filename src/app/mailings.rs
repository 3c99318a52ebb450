//! Creating and editing a mailing: the checks a mailing passes before the store keeps it
//! (window, text, templates, what its channel takes beside the text, tags, bots, media), the
//! same for the API, the CLI and the console.

use crate::channels::{Subject, profile};
use crate::domain::{ChannelKind, InvalidInput, MailingState, invalid};
use crate::ids::{MailingId, TenantId};
use crate::now_ms;
use crate::store::{Mailing, NewMailing, Store, StoreError};
use crate::telegram::{MediaSource, TelegramContent, TelegramKind};
use crate::template::{CLIENT_FIELDS, MessageTemplate, TextLimits};

type Result<T> = std::result::Result<T, StoreError>;

/// Check a new mailing and store it; it starts by itself at `start_at`.
pub async fn create(
    store: &Store,
    tenant_id: TenantId,
    new: NewMailing,
    limits: TextLimits,
) -> Result<Mailing> {
    let new = checked(store, tenant_id, new, limits).await?;
    store.insert_mailing(tenant_id, new).await
}

/// Check an edit of a mailing that has not started, and store it in place of the mailing.
pub async fn update(
    store: &Store,
    tenant_id: TenantId,
    id: MailingId,
    new: NewMailing,
    limits: TextLimits,
) -> Result<Mailing> {
    let current = store.mailing(tenant_id, id).await?;
    if current.state != MailingState::Scheduled {
        return Err(StoreError::Conflict(format!(
            "mailing {id} is {}: only a mailing that has not started can be edited",
            current.state
        )));
    }
    let new = checked(store, tenant_id, new, limits).await?;
    store.replace_mailing(&current, new).await
}

/// Check a mailing without storing it (the console's live preview asks): `new` as it would
/// be stored, or the first rule it breaks.
pub async fn check(
    store: &Store,
    tenant_id: TenantId,
    new: NewMailing,
    limits: TextLimits,
) -> Result<NewMailing> {
    checked(store, tenant_id, new, limits).await
}

/// `new` as it will be stored (see [`prepare_telegram`]), once it passed every check.
async fn checked(
    store: &Store,
    tenant_id: TenantId,
    mut new: NewMailing,
    limits: TextLimits,
) -> Result<NewMailing> {
    prepare_telegram(&mut new).map_err(|e| e.at("telegram"))?;
    check_window_and_text(&new, limits).await?;
    check_subject_and_html(&new, limits).await?;
    check_telegram(&new)?;
    check_references(store, tenant_id, &new).await?;
    check_template_variables(store, tenant_id, &new).await?;
    Ok(new)
}

/// Fill in a Telegram mailing's default (a text message), and point a single medium given only
/// as a file at that file, so that the checks see the content as it will be stored.
fn prepare_telegram(new: &mut NewMailing) -> std::result::Result<(), InvalidInput> {
    if profile(new.channel).telegram_content && new.telegram.is_none() {
        new.telegram = Some(TelegramContent::text_message());
    }
    let Some(content) = &mut new.telegram else {
        return Ok(());
    };
    if content.kind != TelegramKind::MediaGroup && new.uploads.len() == 1 {
        match content.media {
            None => content.media = Some(MediaSource::pending_upload(0)),
            Some(MediaSource::Upload(n)) if n <= 0 => {}
            Some(_) => {
                return Err(invalid(
                    "give the media as a file or as a URL/file_id, not both",
                ));
            }
        }
    }
    let named: Vec<usize> = content
        .sources()
        .filter_map(MediaSource::pending_index)
        .collect();
    for index in 0..new.uploads.len() {
        if !named.contains(&index) {
            return Err(invalid(format!(
                "media file {} is not used by the message",
                index + 1
            )));
        }
    }
    if let Some(index) = named.iter().find(|&&i| i >= new.uploads.len()) {
        return Err(invalid(format!("media file {} was not given", index + 1)));
    }
    Ok(())
}

/// The window is in the future and the text a template within the channel's limit.
async fn check_window_and_text(new: &NewMailing, limits: TextLimits) -> Result<()> {
    if new.end_at <= new.start_at {
        return Err(invalid("the end of the mailing must be after its start")
            .at("end_at")
            .into());
    }
    if new.end_at <= now_ms() {
        return Err(invalid("the end of the mailing is already in the past")
            .at("end_at")
            .into());
    }
    // Telegram content checks its own text: a medium may go without a caption.
    if new.text.trim().is_empty() && !profile(new.channel).telegram_content {
        return Err(invalid("the message text is empty").at("text").into());
    }
    let chars = new.text.chars().count();
    let max_chars = limits.max_chars;
    if chars > max_chars {
        return Err(invalid(format!(
            "the message text has {chars} characters; the limit is {max_chars}"
        ))
        .at("text")
        .into());
    }
    MessageTemplate::check(&new.text, false, limits)
        .await
        .map_err(|e| e.at("text"))?;
    Ok(())
}

/// The channels whose profile says `has`, for an error naming where a part belongs.
fn channels_with(has: impl Fn(ChannelKind) -> bool) -> String {
    let names: Vec<&str> = ChannelKind::ALL
        .into_iter()
        .filter(|c| has(*c))
        .map(ChannelKind::as_str)
        .collect();
    names.join(" and ")
}

/// A subject where the channel has one (one line, a template), required where the channel
/// requires it; an HTML body (a template) only where the channel takes one.
async fn check_subject_and_html(new: &NewMailing, limits: TextLimits) -> Result<()> {
    let channel = new.channel;
    let shape = profile(channel);
    let (name, max_chars) = match shape.subject {
        Subject::None if new.subject.is_some() => {
            return Err(invalid(format!(
                "a subject is for {} mailings, not {channel}",
                channels_with(|c| profile(c).subject.exists())
            ))
            .at("subject")
            .into());
        }
        Subject::None => ("", 0),
        Subject::Required { name, .. }
            if new.subject.as_deref().unwrap_or_default().trim().is_empty() =>
        {
            return Err(invalid(format!("{channel} mailings need a {name}"))
                .at("subject")
                .into());
        }
        Subject::Optional { name, max_chars } | Subject::Required { name, max_chars } => {
            (name, max_chars)
        }
    };
    if let Some(subject) = &new.subject {
        if subject.contains(['\r', '\n']) || subject.chars().count() > max_chars {
            return Err(invalid(format!(
                "the {name} must be one line of at most {max_chars} characters"
            ))
            .at("subject")
            .into());
        }
        MessageTemplate::check(subject, false, limits.with_max_chars(max_chars))
            .await
            .map_err(|e| invalid(format!("{name}: {}", e.0)).at("subject"))?;
    }
    let Some(html) = &new.html else {
        return Ok(());
    };
    if !shape.html_body {
        return Err(invalid(format!(
            "an HTML body is for {} mailings, not {channel}",
            channels_with(|c| profile(c).html_body)
        ))
        .at("html")
        .into());
    }
    let chars = html.chars().count();
    if chars > limits.max_chars {
        return Err(invalid(format!(
            "the HTML body has {chars} characters; the limit is {}",
            limits.max_chars
        ))
        .at("html")
        .into());
    }
    MessageTemplate::check(html, true, limits)
        .await
        .map_err(|e| invalid(format!("HTML body: {}", e.0)).at("html"))?;
    Ok(())
}

/// Telegram content (and media files) only on a channel that takes it, and valid there.
fn check_telegram(new: &NewMailing) -> Result<()> {
    let takes_it = profile(new.channel).telegram_content;
    match &new.telegram {
        Some(content) if takes_it => content.validate(&new.text).map_err(|e| e.at("telegram"))?,
        Some(_) => {
            return Err(invalid(format!(
                "Telegram message options are for {} mailings, not {}",
                channels_with(|c| profile(c).telegram_content),
                new.channel
            ))
            .at("telegram")
            .into());
        }
        None if !new.uploads.is_empty() => {
            return Err(invalid(format!(
                "only {} mailings carry a media file",
                channels_with(|c| profile(c).telegram_content)
            ))
            .at("telegram")
            .into());
        }
        None => {}
    }
    Ok(())
}

/// What the mailing names exists and is the tenant's: its bot, its stored media files, its
/// tags.
async fn check_references(store: &Store, tenant_id: TenantId, new: &NewMailing) -> Result<()> {
    if let Some(name) = new.telegram.as_ref().and_then(|c| c.bot.as_deref())
        && store.telegram_bot(tenant_id, name).await?.is_none()
    {
        return Err(invalid(format!(
            "you have no bot named {name:?}: register it first (blast telegram-bot add, or POST /api/v1/telegram-bots)"
        ))
        .at("telegram")
        .into());
    }
    // Files stored before (an edited mailing keeps its media) must be this tenant's.
    for source in new.telegram.iter().flat_map(TelegramContent::sources) {
        if let MediaSource::Upload(id) = *source
            && id > 0
        {
            store.media_file_name(tenant_id, id).await?;
        }
    }
    let unknown = store.unknown_tags(tenant_id, &new.filter.tags).await?;
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "unknown tag(s): {}; no client of yours has them",
            unknown.join(", ")
        ))
        .at("tags")
        .into());
    }
    Ok(())
}

/// A variable of the text, subject or HTML that is no client field must be an attribute
/// some client of the audience has: otherwise every message would fail, so the mailing is
/// refused now, naming the variable. (A client of the audience without it fails only its own
/// message, at send time.) With nobody in the audience yet there is nothing to check against.
async fn check_template_variables(
    store: &Store,
    tenant_id: TenantId,
    new: &NewMailing,
) -> Result<()> {
    let in_text = MessageTemplate::attribute_variables(&new.text)?;
    let mut needed = in_text.clone();
    let in_subject = match &new.subject {
        Some(subject) => MessageTemplate::attribute_variables(subject)?,
        None => Vec::new(),
    };
    needed.extend(in_subject.iter().cloned());
    if let Some(html) = &new.html {
        needed.extend(MessageTemplate::attribute_variables(html)?);
    }
    needed.sort();
    needed.dedup();
    if needed.is_empty() {
        return Ok(());
    }
    let unknown = store
        .attributes_missing_in_audience(tenant_id, &new.filter, new.channel, &needed)
        .await?;
    if unknown.is_empty()
        || store
            .count_audience(tenant_id, &new.filter, new.channel)
            .await?
            == 0
    {
        return Ok(());
    }
    // The error is the part's that uses the first unknown variable.
    let field = if in_text.contains(&unknown[0]) {
        "text"
    } else if in_subject.contains(&unknown[0]) {
        "subject"
    } else {
        "html"
    };
    Err(invalid(format!(
        "the message uses {}, which no client of this audience has: a template may use the client fields ({}) and the clients' attributes (--attr KEY=VALUE, or \"attributes\" in the API); write {{% if {} is defined %}} around a part only some clients can fill",
        unknown.join(", "),
        CLIENT_FIELDS.join(", "),
        unknown[0],
    ))
    .at(field)
    .into())
}
