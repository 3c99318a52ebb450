//! The `log` channel: appends every delivery to a JSON-lines file. For trials, demos and
//! operators who collect deliveries with another tool.

use super::{DeliveryError, Outgoing};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug)]
pub struct LogChannel {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

#[derive(Serialize)]
struct Line<'a> {
    id: i64,
    mailing_id: i64,
    phone: &'a str,
    text: &'a str,
    at: String,
}

impl LogChannel {
    pub fn new(path: &Path) -> LogChannel {
        LogChannel {
            path: path.to_owned(),
            file: Mutex::new(None),
        }
    }

    pub async fn send(&self, msg: &Outgoing<'_>) -> Result<(), DeliveryError> {
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
