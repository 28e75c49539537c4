-- Churn, floor: one 10-slot counter from creation to deletion, each step its own transaction
-- (pgbench -D n=0).
\set n :n + 1
INSERT INTO floor_counter VALUES ('c' || :client_id || '-' || :n, 10);
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 'c' || :client_id || '-' || :n;
DELETE FROM floor_counter WHERE id = 'c' || :client_id || '-' || :n;
