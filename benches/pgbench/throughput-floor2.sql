-- Throughput, floor2: a random slot of a random counter out of 1,000, the decrement and the
-- result row in one statement.
\set b random(0, 999)
\set s random(0, 9999999)
WITH c AS (UPDATE floor2_counter SET remaining = remaining - 1 WHERE id = 't' || :b RETURNING id)
INSERT INTO floor2_result SELECT c.id, CAST(:s AS integer), '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb FROM c ON CONFLICT DO NOTHING;
