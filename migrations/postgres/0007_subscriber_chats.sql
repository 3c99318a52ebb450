-- One subscriber client per chat and tenant: two /start of a new chat handled at once (webhook
-- deliveries in parallel) must not make two clients. Clients with a phone are the operator's
-- own and may share a chat; before the subscriber bot no client was without a phone.
CREATE UNIQUE INDEX clients_subscriber_chat ON clients (tenant_id, telegram_chat_id)
    WHERE phone IS NULL AND telegram_chat_id IS NOT NULL;
