//! Following a mailing's progress: what the API's event stream and the console's live mailing
//! page both send, read twice a second, as a change or the end.

use crate::domain::MailingState;
use crate::ids::{MailingId, TenantId};
use crate::store::{StateCounts, Store};
use serde::Serialize;
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
