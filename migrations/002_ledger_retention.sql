-- Ledger rows are pruned by age once the queue can no longer redeliver their messages. A BRIN
-- index suits a column that only grows, and costs almost nothing to keep up to date.
CREATE INDEX processed_messages_processed_at ON login_etl.processed_messages USING brin (processed_at);
