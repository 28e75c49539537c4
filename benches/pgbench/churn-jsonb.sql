-- Churn, client-side jsonb: one 10-slot row from creation to deletion by the client that
-- reads 0, each step its own transaction (pgbench -D n=0).
\set n :n + 1
INSERT INTO jsonb_barrier (id, remaining) VALUES ('c' || :client_id || '-' || :n, 10);
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'c' || :client_id || '-' || :n RETURNING remaining \gset
\if :remaining = 0
DELETE FROM jsonb_barrier WHERE id = 'c' || :client_id || '-' || :n RETURNING results;
\endif
