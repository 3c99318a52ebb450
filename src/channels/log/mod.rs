//! The `log` channel: appends every delivery to a JSON-lines file. For trials, demos and
//! operators who collect deliveries with another tool.

mod settings;

pub use settings::LogChannelSettings;

use super::{Attempt, Channel, DeliveryError, NotReachable, Outgoing, Profile, Receipt, Recipient};
use crate::domain::ChannelKind;
use futures::future::BoxFuture;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug)]
pub struct LogChannel {
    path: PathBuf,
    file: Mutex<Option<File>>,
    max_in_flight: usize,
}

/// A file for trials, standing in for SMS (it reaches clients with a phone): mailings only,
/// never a notification's channel.
pub const PROFILE: Profile = Profile {
    notifies: false,
    ..super::sms::PROFILE
};

#[derive(Serialize)]
struct Line<'a> {
    id: crate::ids::MessageId,
    mailing_id: crate::ids::MailingId,
    phone: &'a str,
    text: &'a str,
    at: String,
}

impl LogChannel {
    pub fn new(path: &Path, max_in_flight: usize) -> LogChannel {
        LogChannel {
            path: path.to_owned(),
            file: Mutex::new(None),
            max_in_flight,
        }
    }

    /// Append one line: a write to a local file, quick enough to do in place.
    pub fn append(&self, msg: &Outgoing<'_>) -> Result<(), DeliveryError> {
        let mut line = serde_json::to_vec(&Line {
            id: msg.message_id,
            mailing_id: msg.mailing_id,
            phone: msg.address,
            text: msg.text,
            at: chrono::Utc::now().to_rfc3339(),
        })
        .map_err(|e| DeliveryError::permanent(format!("cannot encode the line: {e}")))?;
        line.push(b'\n');
        let mut guard = self
            .file
            .lock()
            .map_err(|_| DeliveryError::transient("log file lock poisoned"))?;
        if guard.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| {
                    DeliveryError::transient(format!("cannot open {}: {e}", self.path.display()))
                })?;
            *guard = Some(file);
        }
        if let Some(file) = guard.as_mut() {
            // One write per line keeps lines whole even when several processes append.
            file.write_all(&line).map_err(|e| {
                DeliveryError::transient(format!("cannot write {}: {e}", self.path.display()))
            })?;
        }
        Ok(())
    }
}

impl Channel for LogChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Log
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn address(&self, to: &Recipient<'_>) -> Result<String, NotReachable> {
        super::sms::phone_of(to)
    }

    fn send<'a>(&'a self, msg: &'a Outgoing<'a>) -> BoxFuture<'a, Attempt> {
        Box::pin(async move { self.append(msg).map(|()| Receipt::default()).into() })
    }
}
