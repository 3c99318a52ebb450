//! Following a mailing's progress: what the API's event stream and the console's live mailing
//! page both send, read twice a second, as a change or the end; and a tenant's board of its
//! scheduled, running and paused mailings, which the console's dashboard follows.

use crate::domain::{ChannelKind, MailingState};
use crate::ids::{MailingId, TenantId};
use crate::store::{StateCounts, Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;

/// Where a mailing stands.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProgressEvent {
    pub mailing_id: MailingId,
    #[schema(value_type = String)]
    pub state: MailingState,
    pub recipients: i64,
    pub counts: StateCounts,
}

/// What a follower sees next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The counts or the state changed.
    Progress(ProgressEvent),
    /// The mailing is done or cancelled: the last step.
    Done(ProgressEvent),
    /// The mailing is gone (deleted), or the follower may no longer see it: the last step.
    Gone,
    /// The follower's credential stopped being valid: the last step.
    Unauthorized,
}

/// One follower of one mailing.
pub struct Follow {
    store: Store,
    tenant: TenantId,
    mailing: MailingId,
    last: Option<ProgressEvent>,
    finished: bool,
    ticks: u32,
}

/// How often the follower's credential is checked again, in reads (every 10 s).
const CHECK_EVERY_TICKS: u32 = 20;

impl Follow {
    pub fn new(store: Store, tenant: TenantId, mailing: MailingId) -> Follow {
        Follow {
            store,
            tenant,
            mailing,
            last: None,
            finished: false,
            ticks: 0,
        }
    }

    /// Where the mailing stands now.
    pub async fn now(&self) -> Option<ProgressEvent> {
        let m = self.store.mailing(self.tenant, self.mailing).await.ok()?;
        let counts = self.store.mailing_counts(self.mailing).await.ok()?;
        Some(ProgressEvent {
            mailing_id: self.mailing,
            state: m.state,
            recipients: m.recipients,
            counts,
        })
    }

    /// The next step, or `None` after the last. `still_allowed` is asked every 10 s whether
    /// the follower's credential is still good.
    pub async fn next<F, Fut>(&mut self, still_allowed: F) -> Option<Step>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        if self.finished {
            return None;
        }
        let mut interval = tokio::time::interval(Duration::from_millis(500));
        loop {
            interval.tick().await;
            self.ticks += 1;
            if self.ticks.is_multiple_of(CHECK_EVERY_TICKS) && !still_allowed().await {
                self.finished = true;
                return Some(Step::Unauthorized);
            }
            let Some(progress) = self.now().await else {
                self.finished = true;
                return Some(Step::Gone);
            };
            if matches!(progress.state, MailingState::Done | MailingState::Cancelled) {
                self.finished = true;
                return Some(Step::Done(progress));
            }
            if self.last.as_ref() != Some(&progress) {
                self.last = Some(progress.clone());
                return Some(Step::Progress(progress));
            }
        }
    }
}

/// One mailing on a tenant's board.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardRow {
    pub channel: ChannelKind,
    pub progress: ProgressEvent,
}

/// What changed on the board since the last step.
#[derive(Debug, Clone, PartialEq)]
pub enum BoardStep {
    /// Mailings that are new on the board or moved (those that left it show their last
    /// state, done or cancelled, once), and mailings that were deleted.
    Changed {
        rows: Vec<BoardRow>,
        gone: Vec<MailingId>,
    },
    /// The follower's credential stopped being valid: the last step.
    Unauthorized,
}

/// A follower of a tenant's newest scheduled, running and paused mailings, read once a second.
pub struct Board {
    store: Store,
    tenant: TenantId,
    shown: u32,
    last: HashMap<MailingId, BoardRow>,
    interval: tokio::time::Interval,
    finished: bool,
    ticks: u32,
}

/// How often the board's follower checks its credential again, in reads (every 10 s).
const BOARD_CHECK_EVERY_TICKS: u32 = 10;

impl Board {
    /// A board of the tenant's `shown` newest active mailings. Its first step has them all.
    pub fn new(store: Store, tenant: TenantId, shown: u32) -> Board {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Board {
            store,
            tenant,
            shown,
            last: HashMap::new(),
            interval,
            finished: false,
            ticks: 0,
        }
    }

    /// The board now: the tenant's `shown` newest active mailings, newest first, with their
    /// counts.
    pub async fn now(
        store: &Store,
        tenant: TenantId,
        shown: u32,
    ) -> Result<Vec<BoardRow>, StoreError> {
        let mut rows = Vec::new();
        for m in store.active_mailings(tenant, shown).await? {
            rows.push(row(store, &m).await?);
        }
        Ok(rows)
    }

    /// The next change, or `None` after the last step. `still_allowed` is asked every 10 s
    /// whether the follower's credential is still good. A read that fails is tried again at
    /// the next tick.
    pub async fn next<F, Fut>(&mut self, still_allowed: F) -> Option<BoardStep>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        if self.finished {
            return None;
        }
        loop {
            self.interval.tick().await;
            self.ticks += 1;
            if self.ticks.is_multiple_of(BOARD_CHECK_EVERY_TICKS) && !still_allowed().await {
                self.finished = true;
                return Some(BoardStep::Unauthorized);
            }
            match self.changes().await {
                Ok(Some(step)) => return Some(step),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the mailings' board"),
            }
        }
    }

    /// What changed since the last read, if anything.
    async fn changes(&mut self) -> Result<Option<BoardStep>, StoreError> {
        let now = Board::now(&self.store, self.tenant, self.shown).await?;
        let mut rows: Vec<BoardRow> = now
            .iter()
            .filter(|r| self.last.get(&r.progress.mailing_id) != Some(*r))
            .cloned()
            .collect();
        let mut gone = Vec::new();
        let left: Vec<MailingId> = self
            .last
            .keys()
            .filter(|id| !now.iter().any(|r| r.progress.mailing_id == **id))
            .copied()
            .collect();
        for id in left {
            // Done, cancelled, or pushed off by newer ones: shown once more as it is now.
            match self.store.mailing(self.tenant, id).await {
                Ok(m) => rows.push(row(&self.store, &m).await?),
                Err(StoreError::NotFound(_)) => gone.push(id),
                Err(e) => return Err(e),
            }
        }
        self.last = now
            .into_iter()
            .map(|r| (r.progress.mailing_id, r))
            .collect();
        Ok((!rows.is_empty() || !gone.is_empty()).then_some(BoardStep::Changed { rows, gone }))
    }
}

async fn row(store: &Store, m: &crate::store::Mailing) -> Result<BoardRow, StoreError> {
    Ok(BoardRow {
        channel: m.channel,
        progress: ProgressEvent {
            mailing_id: m.id,
            state: m.state,
            recipients: m.recipients,
            counts: store.mailing_counts(m.id).await?,
        },
    })
}
