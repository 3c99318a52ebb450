//! `blast secrets rotate`: seal every tenant secret (bot tokens, webhook secrets) again under
//! `secrets.key`, after a key was set for the first time or changed (the old key kept in
//! `secrets.previous_keys` until this has run).

use super::{Context, Result};
use crate::domain::invalid;

pub async fn rotate(ctx: &Context) -> Result<()> {
    let store = ctx.store("blast secrets rotate")?;
    if !store.seals_secrets() {
        return Err(invalid("set secrets.key first (blast config secret-key makes one)").into());
    }
    let resealed = store.reseal_secrets().await?;
    println!("{resealed} tenant secret(s) sealed under the current key");
    Ok(())
}
