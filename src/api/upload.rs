//! Large request bodies (client imports) arrive on disk before any database work: a slow
//! upload holds a temporary file, never a pooled connection, and is cut off below a minimum
//! rate. Per-tenant slots bound how many such requests one tenant runs at once.

use super::error::ApiError;
use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// How an upload must arrive.
#[derive(Debug, Clone, Copy)]
pub struct UploadRules {
    /// The largest body, in bytes (413 past it).
    pub limit: usize,
    /// The lowest average rate, in bytes per second (408 below it), judged once the upload
    /// has run for `idle` (it may start slowly: a TCP window opening, a client reading its file).
    pub min_bytes_per_sec: u64,
    /// The longest wait for the next piece of the body (408 past it).
    pub idle: Duration,
}

impl UploadRules {
    pub fn of(api: &crate::settings::ApiSettings, limit: usize) -> UploadRules {
        UploadRules {
            limit,
            min_bytes_per_sec: api.upload_min_bytes_per_sec,
            idle: Duration::from_secs(api.body_read_timeout_secs.max(1)),
        }
    }
}

/// A request body, whole, in an unnamed temporary file (removed when dropped).
#[derive(Debug)]
pub struct Spooled {
    /// Positioned at the start.
    pub file: std::fs::File,
    /// SHA-256 of the body.
    pub digest: [u8; 32],
}

fn too_slow(message: String) -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
}

/// Read `body` into a temporary file under `rules`.
pub async fn spool(body: Body, rules: UploadRules) -> Result<Spooled, ApiError> {
    let file = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot create a temporary file for an upload");
            ApiError::internal()
        })?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let (started, mut len, mut hasher) = (Instant::now(), 0u64, Sha256::new());
    loop {
        // A body that stops arriving is ended by the router's body timeout (the same
        // `api.body_read_timeout_secs`); `body_error` turns that into a 408.
        let Some(chunk) = stream.next().await else {
            break;
        };
        let chunk = chunk.map_err(|e| body_error(&e, rules.idle))?;
        len += chunk.len() as u64;
        if len > rules.limit as u64 {
            return Err(ApiError::too_large(rules.limit));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write an upload to its temporary file");
            ApiError::internal()
        })?;
        let elapsed = started.elapsed();
        if elapsed > rules.idle
            && (len as f64) < rules.min_bytes_per_sec as f64 * elapsed.as_secs_f64()
        {
            return Err(too_slow(format!(
                "the upload arrives at less than {} bytes/s",
                rules.min_bytes_per_sec
            )));
        }
    }
    let rewound = async {
        file.flush().await?;
        file.rewind().await?;
        std::io::Result::Ok(file.into_std().await)
    };
    let file = rewound.await.map_err(|e| {
        tracing::error!(error = %e, "cannot rewind an upload's temporary file");
        ApiError::internal()
    })?;
    Ok(Spooled {
        file,
        digest: hasher.finalize().into(),
    })
}

/// A body that failed to arrive: 408 when it stopped arriving (the body timeout of the
/// router's layer), 400 otherwise.
pub fn body_error(e: &(dyn std::error::Error + 'static), idle: Duration) -> ApiError {
    if super::error::stopped_arriving(e) {
        return too_slow(format!(
            "the request body sent nothing for {} s",
            idle.as_secs()
        ));
    }
    ApiError::bad_request(format!("cannot read the request body: {e}"))
}

/// How many requests of a kind each tenant has running.
#[derive(Debug, Default)]
pub struct TenantSlots {
    held: Mutex<HashMap<crate::ids::TenantId, usize>>,
}

/// One running request's slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<TenantSlots>,
    tenant: crate::ids::TenantId,
}

impl TenantSlots {
    /// A slot for `tenant` if it holds fewer than `max`; otherwise a 429 saying `what`.
    pub fn take(
        self: &Arc<Self>,
        tenant: crate::ids::TenantId,
        max: usize,
        what: &str,
    ) -> Result<Slot, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(tenant).or_insert(0);
        if *count >= max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("{max} {what} of this tenant are already running; retry when one ends"),
            ));
        }
        *count += 1;
        Ok(Slot {
            slots: self.clone(),
            tenant,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;

    #[test]
    fn a_tenant_gets_at_most_its_slots_and_they_come_back() {
        let slots = Arc::new(TenantSlots::default());
        let a = slots.take(TenantId(1), 2, "imports").expect("first");
        let _b = slots.take(TenantId(1), 2, "imports").expect("second");
        assert!(slots.take(TenantId(1), 2, "imports").is_err());
        let _other = slots
            .take(TenantId(2), 2, "imports")
            .expect("another tenant");
        drop(a);
        slots.take(TenantId(1), 2, "imports").expect("freed");
    }
}
