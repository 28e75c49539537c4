-- The designs pg_barrier is measured against, each built the way a careful engineer would:
-- byte-compared text keys (as pg_barrier's own), a primary key for every look-up, room on the
-- page for HOT updates of counters, prepared statements (pgbench -M prepared).

-- floor: the bare row-locked counter, the physical limit of a decrement on this server.
CREATE TABLE floor_counter (
    id        text COLLATE "C" PRIMARY KEY,
    remaining integer NOT NULL
) WITH (fillfactor = 70);

-- floor2: the floor plus a row per result, in one statement (a CTE decrements the counter and
-- the result row goes in beside it, ON CONFLICT DO NOTHING): the practical limit of the
-- counter-plus-row-per-result design, with none of a barrier's checks (no slot range, no
-- duplicate that leaves the counter alone, no completion, no aggregate).
CREATE TABLE floor2_counter (
    id        text COLLATE "C" PRIMARY KEY,
    remaining integer NOT NULL
) WITH (fillfactor = 70);

CREATE TABLE floor2_result (
    barrier_id text COLLATE "C" NOT NULL,
    slot       integer NOT NULL,
    result     jsonb,
    PRIMARY KEY (barrier_id, slot)
);

-- client-side jsonb: the counter and the results in one row; the client appends its result,
-- reads `remaining` back, and the one that sees 0 takes the results and deletes the row.
CREATE TABLE jsonb_barrier (
    id        text COLLATE "C" PRIMARY KEY,
    remaining integer NOT NULL,
    results   jsonb NOT NULL DEFAULT '[]'
) WITH (fillfactor = 70);

-- PL/pgSQL twin: pg_barrier's design (a narrow counter row, one row per result, slot dedup, the
-- fire decision and the ordered aggregate in the database) as a plain PL/pgSQL function, over
-- tables made like pg_barrier's own (copied from barrier_internal: the same columns, CHECK
-- constraints, indexes and fillfactor), writing what a report writes there (the counter, the
-- slot's row, the running size of the results, the time of the last progress). What it leaves
-- out is the contract: no owner, argument, size or deadline checks, no shapes.
CREATE TABLE twin_barrier (LIKE barrier_internal.barrier INCLUDING ALL) WITH (fillfactor = 70);
CREATE TABLE twin_result (LIKE barrier_internal.result INCLUDING ALL);

CREATE FUNCTION twin_enqueue(p_id text, p_expected integer) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO twin_barrier (id, round, owner, status, expected, remaining, created_at,
                              expires_at)
    VALUES (p_id, 1, current_user::regrole, 'pending', p_expected, p_expected,
            statement_timestamp(), statement_timestamp() + interval '1 day');
    RETURN 'pending';
END $$;

CREATE FUNCTION twin_decr(p_id text, p_result jsonb, p_slot integer,
                          OUT status text, OUT remaining integer, OUT results jsonb)
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    b twin_barrier%ROWTYPE;
BEGIN
    SELECT * INTO b FROM twin_barrier WHERE id = p_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        status := 'unknown';
        RETURN;
    END IF;
    IF b.status <> 'pending' THEN
        status := 'already_complete';
        remaining := 0;
        RETURN;
    END IF;
    IF p_slot < 0 OR p_slot >= b.expected THEN
        RAISE EXCEPTION 'slot % out of range', p_slot USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO twin_result (barrier_id, slot, result) VALUES (p_id, p_slot, p_result)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        status := 'duplicate';
        remaining := b.remaining;
        RETURN;
    END IF;
    remaining := b.remaining - 1;
    IF remaining > 0 THEN
        UPDATE twin_barrier AS t
           SET remaining = b.remaining - 1, slotted = true,
               result_bytes = b.result_bytes + pg_column_size(p_result) + 8,
               progress_at = statement_timestamp()
         WHERE t.id = p_id;
        status := 'pending';
        RETURN;
    END IF;
    UPDATE twin_barrier AS t
       SET remaining = 0, status = 'complete', finished_at = statement_timestamp(),
           slotted = true, result_bytes = b.result_bytes + pg_column_size(p_result) + 8,
           progress_at = statement_timestamp()
     WHERE t.id = p_id;
    SELECT jsonb_agg(r.result ORDER BY r.slot) INTO results
      FROM twin_result AS r WHERE r.barrier_id = p_id;
    status := 'complete';
END $$;

-- The twin's sweep: finished barriers and their results go.
CREATE FUNCTION twin_sweep() RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, public AS $$
    WITH gone AS (DELETE FROM twin_barrier WHERE status <> 'pending' RETURNING id),
         freed AS (DELETE FROM twin_result r USING gone WHERE r.barrier_id = gone.id RETURNING 1)
    SELECT count(*) FROM gone
$$;

-- Incompressible 1 KB results for the flatness scenario: 20,000 distinct random strings.
CREATE TABLE bench_payload (n integer PRIMARY KEY, body jsonb NOT NULL);
INSERT INTO bench_payload
SELECT n, to_jsonb((SELECT string_agg(md5(random()::text || n || k), '')
                      FROM generate_series(1, 32) k))
  FROM generate_series(0, 19999) n;
ANALYZE bench_payload;
