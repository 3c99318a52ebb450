-- Email mailings: a subject and an optional HTML body, both templates like the text.
ALTER TABLE mailings ADD COLUMN subject TEXT;
ALTER TABLE mailings ADD COLUMN html TEXT;
-- Set when the client used its unsubscribe link; email mailings leave it out from then on.
ALTER TABLE clients ADD COLUMN email_opted_out_at INTEGER;

-- Secrets every process of a deployment shares (the key of unsubscribe links), made on first use.
CREATE TABLE site_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Cluster-wide jobs that must run once per day (the daily statistics email): the first process
-- to claim (job, day) runs it; a failed run is claimed again on a later tick.
CREATE TABLE cron_runs (
    job        TEXT NOT NULL,
    day        TEXT NOT NULL,
    -- running | done | failed
    state      TEXT NOT NULL,
    instance   TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (job, day)
);
