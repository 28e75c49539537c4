-- pg_barrier 0.2.0 -> 0.3.0: the fast decrement. Runs inside ALTER EXTENSION pg_barrier UPDATE;
-- live barriers carry on.

-- Ids compare byte for byte. Only the collation changes, so the tables are not rewritten; their
-- id indexes are rebuilt.
ALTER TABLE barrier_internal.barrier ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE barrier_internal.barrier_spec ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE barrier_internal.result ALTER COLUMN barrier_id TYPE text COLLATE "C";

-- The library now fixes the planner and name-resolution settings of its own SQL while it runs,
-- so the functions no longer carry enable_seqscan. They keep search_path: a session may still
-- run the 0.2.0 library after this update, and that library relies on it.
DO $$
DECLARE
    api regprocedure;
BEGIN
    FOR api IN
        SELECT p.oid
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_depend d
            ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
          JOIN pg_catalog.pg_extension e
            ON e.oid OPERATOR(pg_catalog.=) d.refobjid
           AND e.extname OPERATOR(pg_catalog.=) 'pg_barrier'
         WHERE p.proname OPERATOR(pg_catalog.~~) 'barrier\_%'
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s RESET enable_seqscan', api);
    END LOOP;
END
$$;
