-- Forwarding to the dead-letter queue is at most once per message id. Before a rejection is sent
-- there, a writer claims it (forward_claimed_at); only the writer whose claim took sends it, and
-- a rejection once claimed is not reported for forwarding again. A claim without forwarded_at or
-- forward_error means the process stopped between its send and the record of it: the letter may
-- or may not have reached the dead-letter queue. Nothing is lost either way (the body is sealed in
-- this table); `login-etl rejected list` shows such rows and `rejected replay` can send them.

-- forward_claimed_by is the claiming batch's own random token: a claim whose answer was lost
-- (a connection cut after the commit) is recognised as its own when the batch claims again.
ALTER TABLE login_etl.rejected_messages
    ADD COLUMN forward_claimed_at timestamptz,
    ADD COLUMN forward_claimed_by text;
