//! The registry of live blast processes (by heartbeat), so that `blast up`, which owns an
//! embedded database alone, can refuse to start beside another process instead of taking its
//! work away.

use super::{Result, Store, StoreError};
use crate::now_ms;
use sqlx::Row;

/// Whether a process needs the database to itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceKind {
    /// `blast up`: alone on the database.
    Exclusive,
    /// `blast worker`: shares the database with other workers.
    Shared,
}

impl Store {
    /// Register this process. An exclusive process is refused while any other registered
    /// process has a heartbeat younger than `timeout_ms`; a shared one while an exclusive one
    /// does. Registrations older than that are dropped.
    pub async fn register_instance(
        &self,
        name: &str,
        kind: InstanceKind,
        timeout_ms: i64,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let live = sqlx::query("SELECT name, kind, pid, host, heartbeat_at FROM instances")
            .fetch_all(&mut *tx)
            .await?;
        let here = hostname();
        let mut blocking = None;
        for r in &live {
            let (name, other_kind, pid, host, heartbeat_at): (String, String, i64, String, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            // On this host the process table is the truth: a killed process is dead at once
            // (a restart after kill -9 need not wait), and a live one stays live however late
            // its heartbeat (a busy database can delay it). Elsewhere only the heartbeat tells.
            let dead = if host == here {
                !process_exists(pid)
            } else {
                heartbeat_at < now - timeout_ms
            };
            if dead {
                sqlx::query("DELETE FROM instances WHERE name = $1")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                continue;
            }
            if kind == InstanceKind::Exclusive || other_kind == "exclusive" {
                blocking = Some((name, pid, host));
            }
        }
        if let Some((name, pid, host)) = blocking {
            return Err(StoreError::Conflict(format!(
                "another blast process is running on this database ({name}, pid {pid} on {host}); \
                 `blast up` must be the only one: stop it first"
            )));
        }
        sqlx::query(
            "INSERT INTO instances (name, kind, pid, host, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(name)
        .bind(match kind {
            InstanceKind::Exclusive => "exclusive",
            InstanceKind::Shared => "shared",
        })
        .bind(i64::from(std::process::id()))
        .bind(&here)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Refresh this process's heartbeat. False when its registration is gone (another
    /// process took it for dead).
    pub async fn heartbeat_instance(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE instances SET heartbeat_at = $1 WHERE name = $2")
            .bind(now_ms())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn unregister_instance(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM instances WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Whether a process with this pid exists on this host. Where that cannot be told (no /proc),
/// assume it does, and rely on the heartbeat timeout.
fn process_exists(pid: i64) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.exists() || proc.join(pid.to_string()).exists()
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}
