-- Hours of the recipient's own day when a mailing's messages may go out ("09:00-21:00"); NULL: any time.
ALTER TABLE mailings ADD COLUMN local_hours TEXT;
