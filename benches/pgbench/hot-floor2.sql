-- Hot barrier, floor2: client c reports slots c, c + clients, c + 2 * clients, ... of the one
-- counter (pgbench -D n=0 -D clients=N), the decrement and the result row in one statement.
\set n :n + 1
\set s :client_id + :clients * (:n - 1)
WITH c AS (UPDATE floor2_counter SET remaining = remaining - 1 WHERE id = 'hot' RETURNING id)
INSERT INTO floor2_result SELECT c.id, CAST(:s AS integer), '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb FROM c ON CONFLICT DO NOTHING;
