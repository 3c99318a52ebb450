//! The dashboard's activity (today's messages per channel and state, sends per minute, top
//! errors) and the per-process cache that keeps it cheap. These are aggregates over every
//! message a tenant's mailings touched lately: with a million messages they take the database
//! a second, too long for each page view and too heavy to let a reload loop repeat. So each
//! process keeps every tenant's last answer and makes a new one at most every
//! `console.activity_refresh_secs`, in the background and one at a time per tenant; a page
//! shows the last answer and says how old it is. No page waits for a read: before a tenant's
//! first one, the dashboard shows a placeholder that its script fills in from
//! `/dashboard/activity`. A sign-in starts that first read.

use crate::domain::MessageState;
use crate::ids::TenantId;
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Hours of sends the dashboard's chart shows.
const CHART_HOURS: i64 = 3;

/// What the dashboard shows beside the mailings.
#[derive(Debug)]
pub(super) struct Activity {
    /// When it was read (unix ms).
    pub computed_at: i64,
    /// The states of today's table, in its column order.
    pub states: Vec<MessageState>,
    /// Per channel, today's messages per state (in `states` order).
    pub today: Vec<(String, Vec<i64>)>,
    /// The hours the chart covers, and its sends per minute (minute start, count).
    pub chart_hours: i64,
    pub chart_since: i64,
    pub sends: Vec<(i64, i64)>,
    pub errors: Vec<(String, i64)>,
}

/// Read a tenant's activity now.
async fn read(store: &Store, tenant: TenantId) -> Result<Activity, StoreError> {
    let now = crate::now_ms();
    let day_start = now - now.rem_euclid(86_400_000);
    let states = MessageState::ALL.to_vec();
    let mut today: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for mailing in store.stats(tenant, Some((day_start, now + 1))).await? {
        let row = today
            .entry(mailing.channel.clone())
            .or_insert_with(|| vec![0; states.len()]);
        for (i, s) in states.iter().enumerate() {
            row[i] += mailing.counts.get(*s);
        }
    }
    // Whole minutes, so the first bar is not a fraction of one.
    let chart_since = now - now.rem_euclid(60_000) - (CHART_HOURS * 60 - 1) * 60_000;
    // Only the states some channel has messages in: ten columns of zeros help nobody.
    let shown: Vec<usize> = (0..states.len())
        .filter(|i| today.values().any(|row| row[*i] != 0))
        .collect();
    Ok(Activity {
        computed_at: now,
        states: shown.iter().map(|i| states[*i]).collect(),
        today: today
            .into_iter()
            .map(|(channel, row)| (channel, shown.iter().map(|i| row[*i]).collect()))
            .collect(),
        chart_hours: CHART_HOURS,
        chart_since,
        sends: store.sends_per_minute(tenant, chart_since).await?,
        errors: store
            .top_errors(tenant, (now - 86_400_000, i64::MAX), 5)
            .await?,
    })
}

/// Every tenant's last activity in this process. Bounded by the number of tenants, and an
/// entry is a few kilobytes (at most one chart and five errors).
pub(super) struct ActivityCache {
    store: Store,
    refresh_ms: i64,
    tenants: Mutex<HashMap<TenantId, Entry>>,
}

#[derive(Default)]
struct Entry {
    last: Option<Arc<Activity>>,
    /// Held while this tenant's activity is read: a second reader waits and takes the first
    /// one's answer instead of reading again.
    reading: Arc<tokio::sync::Mutex<()>>,
    /// A background read is under way: no second one is started.
    refreshing: bool,
}

impl ActivityCache {
    /// `refresh_secs` 0 reads the activity again on every view.
    pub(super) fn new(store: Store, refresh_secs: u32) -> Arc<ActivityCache> {
        Arc::new(ActivityCache {
            store,
            refresh_ms: i64::from(refresh_secs) * 1000,
            tenants: Mutex::new(HashMap::new()),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Entry>> {
        // The map holds plain values that no panic leaves half-written.
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_fresh(&self, activity: &Activity, now: i64) -> bool {
        now - activity.computed_at < self.refresh_ms
    }

    /// The tenant's last activity, without waiting: fresh, or older while a new one is read in
    /// the background; None before the first one is read (which this starts).
    pub(super) fn cached(self: &Arc<Self>, tenant: TenantId) -> Option<Arc<Activity>> {
        if self.refresh_ms == 0 {
            return None;
        }
        let mut entries = self.entries();
        let entry = entries.entry(tenant).or_default();
        let last = entry.last.clone();
        if last
            .as_ref()
            .is_none_or(|last| !self.is_fresh(last, crate::now_ms()))
            && !entry.refreshing
        {
            entry.refreshing = true;
            let cache = self.clone();
            tokio::spawn(async move {
                if let Err(e) = cache.fresh(tenant).await {
                    tracing::warn!(error = %e, tenant = tenant.0, "cannot read the dashboard's activity");
                }
                if let Some(entry) = cache.entries().get_mut(&tenant) {
                    entry.refreshing = false;
                }
            });
        }
        last
    }

    /// The tenant's activity, fresh: the one kept, the one another caller is reading now, or
    /// one read now.
    pub(super) async fn fresh(&self, tenant: TenantId) -> Result<Arc<Activity>, StoreError> {
        let asked = crate::now_ms();
        let reading = self.entries().entry(tenant).or_default().reading.clone();
        let _turn = reading.lock().await;
        if let Some(last) = self.entries().get(&tenant).and_then(|e| e.last.clone())
            && (self.is_fresh(&last, asked) || last.computed_at >= asked)
        {
            return Ok(last);
        }
        let fresh = Arc::new(read(&self.store, tenant).await?);
        self.entries().entry(tenant).or_default().last = Some(fresh.clone());
        Ok(fresh)
    }
}
