-- Throughput, client-side jsonb: append the result, read remaining back; at 0, take and delete.
\set b random(0, 999)
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 't' || :b RETURNING remaining \gset
\if :remaining = 0
DELETE FROM jsonb_barrier WHERE id = 't' || :b RETURNING results;
\endif
