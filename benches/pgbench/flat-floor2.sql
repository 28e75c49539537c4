-- Flatness, floor2: slot n decrements the counter and stores its 1 KB in one statement.
\set n :n + 1
WITH c AS (UPDATE floor2_counter SET remaining = remaining - 1 WHERE id = 'flat' RETURNING id)
INSERT INTO floor2_result
SELECT c.id, CAST(:n - 1 AS integer), (SELECT body FROM bench_payload WHERE n = :n - 1) FROM c
    ON CONFLICT DO NOTHING;
