//! `blast mailing …`: create, preview, list, show, follow, pause, resume, retry and cancel
//! mailings, and list their messages.

use super::{Context, Result, print_json};
use crate::domain::{
    AudienceFilter, ChannelKind, InvalidInput, MailingState, MessageState, Priority, invalid,
};
use crate::ids::MailingId;
use crate::now_ms;
use crate::store::{Mailing, MediaUpload, NewMailing, StateCounts};
use crate::telegram::{AlbumItem, MediaSource, TelegramContent, TelegramKind, UrlButton};
use blast_cli::{
    MailingCreateArgs, MessageStateArg, Progress, TelegramArgs, format_duration_ms, format_time_ms,
    table,
};
use serde::Serialize;
use std::time::Duration;

/// Parse a time given on the command line: RFC 3339 or `now`. Returns unix ms.
pub fn parse_time(s: &str) -> Result<i64, InvalidInput> {
    if s.trim().eq_ignore_ascii_case("now") {
        return Ok(now_ms());
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            invalid(format!(
                "invalid time {s:?}: use RFC 3339, e.g. 2026-12-01T10:00:00Z or 2026-12-01T13:00:00+03:00, or \"now\""
            ))
        })
}

/// Turn the command's arguments into a mailing to create.
pub fn new_mailing(
    args: &MailingCreateArgs,
    default_window_hours: u32,
    max_upload_bytes: u64,
) -> Result<NewMailing, InvalidInput> {
    let start_at = match &args.start {
        Some(s) => parse_time(s)?,
        None => now_ms(),
    };
    let end_at = match &args.end {
        Some(s) => parse_time(s)?,
        None => start_at + i64::from(default_window_hours) * 3_600_000,
    };
    let filter = AudienceFilter::requested(&args.tags, &args.operators, args.all)?;
    let channel = args.channel.as_str().parse::<ChannelKind>()?;
    let (telegram, uploads) = telegram_content(&args.telegram, channel, max_upload_bytes)?;
    Ok(NewMailing {
        channel,
        text: args.text.clone().unwrap_or_default(),
        filter,
        priority: args
            .priority
            .as_str()
            .parse::<Priority>()
            .map_err(crate::domain::invalid)?,
        start_at,
        end_at,
        local_hours: args.local_hours.as_deref().map(str::parse).transpose()?,
        subject: args.subject.clone(),
        html: args
            .html_file
            .as_deref()
            .map(|path| {
                std::fs::read_to_string(path).map_err(|e| {
                    crate::domain::invalid(format!(
                        "cannot read the HTML body {}: {e}",
                        path.display()
                    ))
                })
            })
            .transpose()?,
        telegram,
        uploads,
    })
}

/// The Telegram part of `blast mailing create`: kind, media (a URL, `file_id:ID`, or a local
/// file read into the mailing), album, parse mode, link preview, buttons, bot.
fn telegram_content(
    args: &TelegramArgs,
    channel: ChannelKind,
    max_upload_bytes: u64,
) -> Result<(Option<TelegramContent>, Vec<MediaUpload>), InvalidInput> {
    let chosen = args.media.chosen();
    let given = chosen.is_some()
        || !args.album.is_empty()
        || args.bot.is_some()
        || args.parse_mode.is_some()
        || args.no_link_preview
        || args.paid_broadcast
        || !args.buttons.is_empty();
    if channel != ChannelKind::Telegram {
        if given {
            return Err(invalid(
                "--photo, --video, --voice, --video-note, --animation, --document, --album, --bot, --parse-mode, --no-link-preview, --button and --paid-broadcast are for --channel telegram",
            ));
        }
        return Ok((None, Vec::new()));
    }
    let mut uploads = Vec::new();
    let (kind, media) = match chosen {
        None if !args.album.is_empty() => (TelegramKind::MediaGroup, None),
        None => (TelegramKind::Text, None),
        Some((kind, media)) => (
            kind_named(kind)?,
            Some(media_source(media, &mut uploads, max_upload_bytes)?),
        ),
    };
    let album = args
        .album
        .iter()
        .map(|item| {
            let (kind, media) = item.split_once(':').ok_or_else(|| {
                invalid(format!(
                    "--album {item:?}: expected KIND:MEDIA, e.g. photo:./a.jpg"
                ))
            })?;
            Ok(AlbumItem {
                kind: kind_named(kind)?,
                media: media_source(media, &mut uploads, max_upload_bytes)?,
            })
        })
        .collect::<Result<Vec<_>, InvalidInput>>()?;
    let content = TelegramContent {
        kind,
        media,
        album,
        parse_mode: args
            .parse_mode
            .map(|mode| mode.as_str().parse())
            .transpose()?,
        link_preview: !args.no_link_preview,
        buttons: args
            .buttons
            .iter()
            .map(|b| b.parse::<UrlButton>().map(|b| vec![b]))
            .collect::<Result<_, _>>()?,
        allow_paid_broadcast: args.paid_broadcast,
        bot: args.bot.clone(),
    };
    Ok((Some(content), uploads))
}

fn kind_named(kind: &str) -> Result<TelegramKind, InvalidInput> {
    serde_json::from_value(serde_json::Value::String(kind.into()))
        .map_err(|_| invalid(format!("{kind:?} is not a kind of Telegram message")))
}

/// MEDIA as the command line gives it: an http(s) URL, `file_id:ID`, or a local file (read
/// into `uploads` and named by its place there).
fn media_source(
    media: &str,
    uploads: &mut Vec<MediaUpload>,
    max_upload_bytes: u64,
) -> Result<MediaSource, InvalidInput> {
    if media.starts_with("http://") || media.starts_with("https://") {
        return Ok(MediaSource::Url(media.to_string()));
    }
    if let Some(id) = media.strip_prefix("file_id:") {
        return Ok(MediaSource::FileId(id.to_string()));
    }
    Ok(read_media_file(std::path::Path::new(media), max_upload_bytes)?.append_to(uploads))
}

/// A local media file, refused when larger than `telegram.max_upload_bytes`.
fn read_media_file(path: &std::path::Path, max_bytes: u64) -> Result<MediaUpload, InvalidInput> {
    let cannot = |e: std::io::Error| invalid(format!("cannot read {}: {e}", path.display()));
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > max_bytes {
        return Err(invalid(format!(
            "{} has {size} bytes; telegram.max_upload_bytes is {max_bytes}",
            path.display()
        )));
    }
    if size == 0 {
        return Err(invalid(format!("{} is empty", path.display())));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    Ok(MediaUpload {
        file_name,
        content: std::fs::read(path).map_err(cannot)?,
    })
}

#[derive(Serialize)]
struct MailingView<'a> {
    #[serde(flatten)]
    mailing: &'a Mailing,
    counts: &'a StateCounts,
}

/// The mailing the flags describe, under this configuration's defaults.
fn requested_mailing(ctx: &Context, args: &MailingCreateArgs) -> Result<NewMailing> {
    Ok(new_mailing(
        args,
        ctx.settings.mailing.default_window_hours,
        ctx.settings.telegram.max_upload_bytes,
    )?)
}

/// A mailing just stored: as JSON, or one line saying what was `done` to it.
fn print_stored(mailing: &Mailing, done: &str, json: bool) {
    if json {
        print_json(&MailingView {
            mailing,
            counts: &StateCounts::default(),
        });
        return;
    }
    println!(
        "mailing {} {done}: {} on {}, {} priority, from {} to {}",
        mailing.id,
        mailing.state,
        mailing.channel,
        mailing.priority.as_str(),
        format_time_ms(mailing.start_at),
        format_time_ms(mailing.end_at)
    );
}

pub async fn create(ctx: &Context, args: &MailingCreateArgs) -> Result<()> {
    let new = requested_mailing(ctx, args)?;
    let limits = ctx.settings.text_limits(new.channel);
    let mailing = ctx.backend().await?.create_mailing(new, limits).await?;
    print_stored(&mailing, "created", args.json);
    if !args.json {
        eprintln!("follow it with: blast mailing watch {}", mailing.id);
    }
    Ok(())
}

pub async fn preview(ctx: &Context, args: &MailingCreateArgs) -> Result<()> {
    let new = requested_mailing(ctx, args)?;
    let audience = filter_text(&new.filter);
    let preview = ctx
        .backend()
        .await?
        .preview_mailing(new, &ctx.settings)
        .await?;
    if args.json {
        print_json(&preview);
        return Ok(());
    }
    println!("recipients  {} ({audience})", preview.recipients);
    if let Some(secs) = preview.expected_duration_secs {
        println!(
            "duration    about {} at the channel's rate",
            format_duration_ms((secs * 1000.0).ceil() as i64)
        );
    }
    match &preview.sample {
        None => println!("sample      nobody matches, so there is no sample"),
        Some(sample) => match (&sample.text, &sample.error) {
            (Some(text), _) => println!("sample      for client {}:\n{text}", sample.client_id),
            (None, error) => println!(
                "sample      cannot be rendered for client {}: {}",
                sample.client_id,
                error.as_deref().unwrap_or("unknown error")
            ),
        },
    }
    Ok(())
}

fn filter_text(f: &AudienceFilter) -> String {
    let mut parts = Vec::new();
    if !f.tags.is_empty() {
        parts.push(format!("tags {}", f.tags.join("|")));
    }
    if !f.operator_codes.is_empty() {
        parts.push(format!("operators {}", f.operator_codes.join("|")));
    }
    if parts.is_empty() {
        "all clients".into()
    } else {
        parts.join(" and ")
    }
}

pub async fn list(ctx: &Context, limit: u32, json: bool) -> Result<()> {
    let mailings = ctx.backend().await?.list_mailings(limit).await?;
    if json {
        print_json(&mailings);
        return Ok(());
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "state",
                "channel",
                "priority",
                "audience",
                "recipients",
                "start",
                "end",
                "text"
            ],
            mailings.iter().map(|m| {
                vec![
                    m.id.to_string(),
                    m.state.to_string(),
                    m.channel.to_string(),
                    m.priority.as_str().to_owned(),
                    filter_text(&m.filter),
                    m.recipients.to_string(),
                    format_time_ms(m.start_at),
                    format_time_ms(m.end_at),
                    m.text.chars().take(40).collect(),
                ]
            })
        )
    );
    Ok(())
}

pub async fn show(ctx: &Context, id: MailingId, json: bool) -> Result<()> {
    let (mailing, counts) = ctx.backend().await?.mailing(id).await?;
    if json {
        print_json(&MailingView {
            mailing: &mailing,
            counts: &counts,
        });
        return Ok(());
    }
    println!("mailing {}: {}", mailing.id, mailing.state);
    println!(
        "  channel   {} ({} priority)",
        mailing.channel,
        mailing.priority.as_str()
    );
    println!("  audience  {}", filter_text(&mailing.filter));
    println!(
        "  window    {} .. {}",
        format_time_ms(mailing.start_at),
        format_time_ms(mailing.end_at)
    );
    if let Some(hours) = mailing.local_hours {
        println!("  hours     {hours} in each recipient's time zone");
    }
    if let Some(started) = mailing.started_at {
        let until = mailing.finished_at.unwrap_or_else(now_ms);
        println!(
            "  running   {} since {}",
            format_duration_ms(until - started),
            format_time_ms(started)
        );
    }
    println!("  text      {}", mailing.text);
    println!(
        "{}",
        table(
            &["state", "messages"],
            MessageState::ALL
                .iter()
                .filter(|s| counts.get(**s) > 0)
                .map(|s| vec![s.to_string(), counts.get(*s).to_string()])
                .chain(std::iter::once(vec![
                    "total".to_owned(),
                    counts.total().to_string()
                ]))
        )
    );
    Ok(())
}

pub async fn cancel(ctx: &Context, id: MailingId) -> Result<()> {
    let backend = ctx.backend().await?;
    backend.cancel_mailing(id).await?;
    ctx.announce_halt(id).await;
    let (_, counts) = backend.mailing(id).await?;
    println!(
        "mailing {id} cancelled: {} sent before the cancel, {} will not be sent",
        counts.get(MessageState::Sent),
        counts.get(MessageState::Cancelled)
    );
    Ok(())
}

pub async fn update(ctx: &Context, id: MailingId, args: &MailingCreateArgs) -> Result<()> {
    let new = requested_mailing(ctx, args)?;
    let limits = ctx.settings.text_limits(new.channel);
    let mailing = ctx.backend().await?.update_mailing(id, new, limits).await?;
    print_stored(&mailing, "replaced", args.json);
    Ok(())
}

pub async fn delete(ctx: &Context, id: MailingId) -> Result<()> {
    ctx.backend().await?.delete_mailing(id).await?;
    println!("mailing {id} deleted");
    Ok(())
}

pub async fn pause(ctx: &Context, id: MailingId) -> Result<()> {
    let mailing = ctx.backend().await?.pause_mailing(id).await?;
    ctx.announce_halt(id).await;
    println!(
        "mailing {id} {}: nothing more is sent until `blast mailing resume {id}`",
        mailing.state
    );
    Ok(())
}

pub async fn resume(ctx: &Context, id: MailingId) -> Result<()> {
    let mailing = ctx.backend().await?.resume_mailing(id).await?;
    println!("mailing {id} {}", mailing.state);
    Ok(())
}

pub async fn retry_failed(ctx: &Context, id: MailingId) -> Result<()> {
    let retried = ctx.backend().await?.retry_failed(id).await?;
    println!("mailing {id}: {retried} failed messages queued again");
    Ok(())
}

pub async fn messages(
    ctx: &Context,
    id: MailingId,
    state: Option<MessageStateArg>,
    after: Option<i64>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let state = state
        .map(|s| s.as_str().parse::<MessageState>())
        .transpose()?;
    let rows = ctx
        .backend()
        .await?
        .mailing_messages(id, state, after, limit)
        .await?;
    if json {
        print_json(&rows);
        return Ok(());
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "client",
                "phone",
                "state",
                "attempts",
                "sent",
                "updated",
                "last error"
            ],
            rows.iter().map(|m| {
                vec![
                    m.id.to_string(),
                    m.client_id.to_string(),
                    m.phone.clone(),
                    m.state.to_string(),
                    m.attempts.to_string(),
                    m.sent_at.map(format_time_ms).unwrap_or_default(),
                    format_time_ms(m.updated_at),
                    m.last_error.clone().unwrap_or_default(),
                ]
            })
        )
    );
    if rows.len() == limit as usize
        && let Some(last) = rows.last()
    {
        eprintln!(
            "more may follow: blast mailing messages {id} --after {}",
            last.id
        );
    }
    Ok(())
}

/// A one-line summary of counts for the progress bar.
fn counts_line(c: &StateCounts) -> String {
    let mut parts = vec![format!("sent {}", c.get(MessageState::Sent))];
    for state in [
        MessageState::FailedTemporary,
        MessageState::FailedPermanent,
        MessageState::Expired,
        MessageState::Cancelled,
        MessageState::Unknown,
    ] {
        if c.get(state) > 0 {
            parts.push(format!("{} {}", state, c.get(state)));
        }
    }
    parts.join(", ")
}

pub async fn watch(ctx: &Context, id: MailingId) -> Result<()> {
    let backend = ctx.backend().await?;
    let (mut mailing, mut counts) = backend.mailing(id).await?;
    let progress = Progress::new(mailing.recipients.max(0) as u64, &format!("mailing {id}"));
    loop {
        match mailing.state {
            MailingState::Scheduled => progress.message(format!(
                "scheduled; starts at {}",
                format_time_ms(mailing.start_at)
            )),
            _ => {
                progress.set_total(counts.total().max(mailing.recipients) as u64);
                progress.set(counts.finished() as u64);
                progress.message(counts_line(&counts));
            }
        }
        if matches!(mailing.state, MailingState::Done | MailingState::Cancelled) {
            progress.finish(counts_line(&counts));
            println!("mailing {id} {}: {}", mailing.state, counts_line(&counts));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        (mailing, counts) = backend.mailing(id).await?;
    }
}
