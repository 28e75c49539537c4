-- Every API function plans its SQL with sequential scans disabled. Plans are prepared once per
-- backend and kept; a backend that first runs while the tables are nearly empty would otherwise
-- keep sequential-scan plans as the tables grow (until an ANALYZE invalidates them), and every
-- lookup by id would scan the table. All of our statements are built for their indexes.
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
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET enable_seqscan = off', api);
    END LOOP;
END
$$;
