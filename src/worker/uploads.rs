//! Media of Telegram mailings: each stored file is uploaded once per bot, then sent by the
//! file_id Telegram gave it.

use crate::channels::{MediaRef, Receipt, direct_media};
use crate::store::{Outcome, Store, StoreError};
use crate::telegram::{MediaSource, TelegramContent};
use std::sync::Arc;

/// The file_id of one stored media file once uploaded, behind the lock its uploader holds.
type UploadCell = Arc<tokio::sync::Mutex<Option<String>>>;

/// One lock per stored media file and bot, holding the file_id Telegram gave that bot for it
/// once known. The first send of a file takes the lock and uploads it; the others wait and
/// send by file_id.
#[derive(Debug, Clone, Default)]
pub struct MediaUploads {
    cells: Arc<std::sync::Mutex<std::collections::HashMap<(i64, String), UploadCell>>>,
}

/// One medium of a Telegram send, resolved: passed through, sent by a known file_id, or
/// uploaded.
enum ResolvedItem {
    Direct,
    FileId(String),
    Upload {
        file_name: String,
        content: Vec<u8>,
        media_id: i64,
    },
}

/// A Telegram send's media, resolved, holding the lock of every file it uploads until that
/// file's file_id is stored.
#[derive(Default)]
pub(super) struct ResolvedMedia {
    items: Vec<ResolvedItem>,
    locks: std::collections::HashMap<i64, tokio::sync::OwnedMutexGuard<Option<String>>>,
}

/// The media references of one Telegram send, one per medium of its content.
pub(super) fn media_refs<'a>(
    media: &'a ResolvedMedia,
    content: Option<&'a TelegramContent>,
) -> Vec<MediaRef<'a>> {
    let sources = content.into_iter().flat_map(TelegramContent::sources);
    // Stops at the first item that cannot be referenced: the channel then refuses the send
    // (fewer media than the content names) instead of pairing file_ids with the wrong files.
    media
        .items
        .iter()
        .zip(sources)
        .map_while(|(item, source)| match item {
            ResolvedItem::Direct => direct_media(source),
            ResolvedItem::FileId(id) => Some(MediaRef::FileId(id)),
            ResolvedItem::Upload {
                file_name, content, ..
            } => Some(MediaRef::Upload { file_name, content }),
        })
        .collect()
}

impl MediaUploads {
    fn cell(&self, media_id: i64, bot_id: &str) -> UploadCell {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells
            .entry((media_id, bot_id.to_string()))
            .or_default()
            .clone()
    }

    /// The media of a Telegram mailing for this send through `bot_id`. A stored file is
    /// uploaded by the first send that finds no file_id for it (holding its lock meanwhile);
    /// the others wait for that and send by file_id. Locks are taken in file order, so two
    /// albums sharing files cannot wait on each other.
    pub(super) async fn resolve(
        &self,
        store: &Store,
        content: Option<&TelegramContent>,
        bot_id: &str,
    ) -> Result<ResolvedMedia, Outcome> {
        let Some(content) = content else {
            return Ok(ResolvedMedia::default());
        };
        let mut stored: Vec<i64> = content
            .sources()
            .filter_map(|source| match *source {
                MediaSource::Upload(id) => Some(id),
                _ => None,
            })
            .collect();
        stored.sort_unstable();
        stored.dedup();
        let mut media = ResolvedMedia::default();
        let mut known = std::collections::HashMap::new();
        for media_id in stored {
            let mut lock = self.cell(media_id, bot_id).lock_owned().await;
            if lock.is_none() {
                match store.telegram_file_id(media_id, bot_id).await {
                    Ok(file_id) => *lock = file_id,
                    Err(_) => return Err(Outcome::Release),
                }
            }
            match lock.clone() {
                Some(file_id) => {
                    known.insert(media_id, file_id);
                }
                None => {
                    media.locks.insert(media_id, lock);
                }
            }
        }
        for source in content.sources() {
            let MediaSource::Upload(media_id) = *source else {
                media.items.push(ResolvedItem::Direct);
                continue;
            };
            if let Some(file_id) = known.get(&media_id) {
                media.items.push(ResolvedItem::FileId(file_id.clone()));
                continue;
            }
            match store.media_file(media_id).await {
                Ok((file_name, content)) => media.items.push(ResolvedItem::Upload {
                    file_name,
                    content,
                    media_id,
                }),
                Err(StoreError::NotFound(what)) => {
                    return Err(Outcome::Failed {
                        error: format!("{what} is gone"),
                    });
                }
                Err(_) => return Err(Outcome::Release),
            }
        }
        Ok(media)
    }

    /// After an upload: store the file_ids Telegram gave `bot_id`, so every other send uses
    /// them.
    pub(super) async fn remember(
        store: &Store,
        media: &mut ResolvedMedia,
        receipt: &Receipt,
        bot_id: &str,
    ) {
        for (item, file_id) in media.items.iter().zip(&receipt.file_ids) {
            let (ResolvedItem::Upload { media_id, .. }, Some(file_id)) = (item, file_id) else {
                continue;
            };
            if let Err(e) = store
                .save_telegram_file_id(*media_id, bot_id, file_id)
                .await
            {
                tracing::warn!(error = %e, media = *media_id, "cannot store an uploaded file's id; the next send uploads it again");
                continue;
            }
            if let Some(lock) = media.locks.get_mut(media_id) {
                **lock = Some(file_id.clone());
            }
        }
    }
}
