-- Forwarding to the dead-letter queue is recorded with the rejection, so that a message is
-- forwarded once, after the commit that recorded its rejection, and a redelivery of a message
-- whose rejection is committed is not forwarded again.

ALTER TABLE login_etl.rejected_messages
    -- When the original body reached the dead-letter queue.
    ADD COLUMN forwarded_at  timestamptz,
    -- Why it never will: SQS refused the entry for good (its code and message), or it is larger
    -- than a SendMessageBatch request can carry. Never the body.
    -- Rows rejected before this migration get the default: whether they were forwarded is not
    -- known, and they are not forwarded again. Adding a column with a constant default rewrites
    -- nothing; dropping the default leaves it to those rows only.
    ADD COLUMN forward_error text DEFAULT 'rejected before forwarding was recorded (migration 006)';
ALTER TABLE login_etl.rejected_messages ALTER COLUMN forward_error DROP DEFAULT;
