-- Hot barrier, client-side jsonb: every client appends to the one row.
UPDATE jsonb_barrier SET remaining = remaining - 1, results = results || jsonb_build_array('"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'::jsonb)
 WHERE id = 'hot' RETURNING remaining \gset
\if :remaining = 0
DELETE FROM jsonb_barrier WHERE id = 'hot' RETURNING results;
\endif
