//! `blast client import FILE.csv`: the file streamed into the store (locally, or through a
//! remote blast's API) with its progress shown; bad rows listed by line.

use super::{Context, Result};
use crate::domain::invalid;
use blast_cli::Progress;
use std::path::Path;

pub async fn run(ctx: &Context, path: &Path, skip_invalid: bool) -> Result<()> {
    let backend = ctx.backend().await?;
    let file = std::fs::File::open(path)
        .map_err(|e| invalid(format!("cannot open {}: {e}", path.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = Progress::bytes(size, "importing");
    let outcome = backend
        .import_csv(
            file,
            skip_invalid,
            ctx.settings.api.import_max_errors,
            |bytes| progress.set(bytes),
        )
        .await?;
    progress.finish("done".into());
    for e in &outcome.errors {
        eprintln!("line {}: {}", e.line, e.message);
    }
    let unlisted = outcome
        .error_count
        .saturating_sub(outcome.errors.len() as u64);
    if unlisted > 0 {
        eprintln!("… and {unlisted} more invalid row(s)");
    }
    if !outcome.committed {
        return Err(invalid(format!(
            "{} invalid row(s); nothing imported (fix them, or pass --skip-invalid to import the valid ones)",
            outcome.error_count
        ))
        .into());
    }
    println!(
        "imported {} client(s): {} new, {} updated, {} invalid row(s) skipped",
        outcome.imported, outcome.report.inserted, outcome.report.updated, outcome.error_count
    );
    Ok(())
}
