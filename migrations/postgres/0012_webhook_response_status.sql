-- The HTTP status the receiver answered a webhook event's last posting with (none when it
-- could not be reached or the URL was refused before sending): the console's delivery history
-- and the API's list show it.
ALTER TABLE webhook_deliveries ADD COLUMN response_status INTEGER;
