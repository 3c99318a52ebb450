-- Partial indexes for the questions asked only about some states. A message row is
-- updated four times on its way to `sent` (claimed, sending, sent, perhaps renewed); on
-- PostgreSQL each update writes an entry into every index whose predicate the new row meets,
-- so a row in flight or sent no longer pays for the pump's index, and a due or sent row no
-- longer pays for the reconciler's.

-- The pump's question: which rows of this mailing are due? With the id last, a claim can
-- continue from the key of the last row it took instead of walking from the start.
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (mailing_id, state, next_attempt_at, id)
    WHERE state IN ('pending', 'failed_temporary');

-- The reconciler's question: which claimed rows have been held too long?
DROP INDEX messages_held;
CREATE INDEX messages_held ON messages (state, updated_at)
    WHERE state IN ('queued', 'sending');

-- A job's rows are found by their claim and state. With the state in the same index the
-- planner takes this one index; with the claim alone it combined it with `messages_held`,
-- whose `queued` range grows with every claimed row version until vacuum.
DROP INDEX messages_claim;
CREATE INDEX messages_claim ON messages (claim, state) WHERE claim IS NOT NULL;
