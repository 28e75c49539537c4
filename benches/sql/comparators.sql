-- The designs pg_barrier is measured against, each built the way a careful engineer would:
-- byte-compared text keys (as pg_barrier's own), a primary key for every look-up, room on the
-- page for HOT updates of counters, prepared statements (pgbench -M prepared).

-- floor: the bare row-locked counter, the physical limit of a decrement on this server.
CREATE TABLE floor_counter (
    id        text COLLATE "C" PRIMARY KEY,
    remaining integer NOT NULL
) WITH (fillfactor = 70);

-- client-side jsonb: the counter and the results in one row; the client appends its result,
-- reads `remaining` back, and the one that sees 0 takes the results and deletes the row.
CREATE TABLE jsonb_barrier (
    id        text COLLATE "C" PRIMARY KEY,
    remaining integer NOT NULL,
    results   jsonb NOT NULL DEFAULT '[]'
) WITH (fillfactor = 70);

-- PL/pgSQL twin: pg_barrier's design (a narrow counter row, one row per result, slot dedup, the
-- fire decision and the ordered aggregate in the database) as PL/pgSQL.
CREATE TABLE twin_barrier (
    id          text COLLATE "C" PRIMARY KEY,
    status      text NOT NULL DEFAULT 'pending',
    expected    integer NOT NULL,
    remaining   integer NOT NULL,
    finished_at timestamptz
) WITH (fillfactor = 70);

CREATE TABLE twin_result (
    barrier_id text COLLATE "C" NOT NULL,
    slot       integer NOT NULL,
    result     jsonb,
    PRIMARY KEY (barrier_id, slot)
);

CREATE FUNCTION twin_enqueue(p_id text, p_expected integer) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO twin_barrier (id, expected, remaining) VALUES (p_id, p_expected, p_expected);
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
    INSERT INTO twin_result VALUES (p_id, p_slot, p_result) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        status := 'duplicate';
        remaining := b.remaining;
        RETURN;
    END IF;
    remaining := b.remaining - 1;
    IF remaining > 0 THEN
        UPDATE twin_barrier t SET remaining = t.remaining - 1 WHERE t.id = p_id;
        status := 'pending';
        RETURN;
    END IF;
    UPDATE twin_barrier SET remaining = 0, status = 'complete', finished_at = now()
     WHERE id = p_id;
    SELECT jsonb_agg(r.result ORDER BY r.slot) INTO results
      FROM twin_result r WHERE r.barrier_id = p_id;
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
