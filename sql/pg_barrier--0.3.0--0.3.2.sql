-- pg_barrier 0.3.0 -> 0.3.2: the same tables and functions. Runs inside ALTER EXTENSION pg_barrier
-- UPDATE; live barriers carry on. (0.3.1 was a release of the SQL edition only.)
--
-- The functions no longer carry `SET search_path`: the library has pinned the settings of its
-- own SQL in code since 0.3.0, and the setting cost every call a configuration switch. Sessions
-- still running an older library after this update must be restarted (see the README).
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
        EXECUTE pg_catalog.format('ALTER FUNCTION %s RESET search_path', api);
    END LOOP;
END
$$;

