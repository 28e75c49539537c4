-- Flatness, client-side jsonb: slot n appends 1 KB; the client that reads 0 takes the results.
\set n :n + 1
UPDATE jsonb_barrier
   SET remaining = remaining - 1,
       results = results || jsonb_build_array((SELECT body FROM bench_payload WHERE n = :n - 1))
 WHERE id = 'flat' RETURNING remaining \gset
\if :remaining = 0
DELETE FROM jsonb_barrier WHERE id = 'flat' RETURNING results;
\endif
