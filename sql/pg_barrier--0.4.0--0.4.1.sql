-- pg_barrier 0.4.0 to 0.4.1: the Citus layout (src/distribute.sql as released in 0.4.1). The
-- library's functions keep their signatures; the tables do not change.

-- Whether the state tables are distributed by Citus in this database. The sweep, the completion
-- queue and the role checks ask it: the statements that span barriers take other forms there.
-- (The helpers here run inside the API's calls, under the search_path those pin, and name every
-- object with its schema.)
CREATE FUNCTION barrier_internal.distributed() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    answer boolean;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    -- Named only when Citus is there: this function must compile without it.
    EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                             WHERE logicalrelid OPERATOR(pg_catalog.=) $1)'
       INTO answer
      USING 'barrier_internal.barrier'::pg_catalog.regclass;
    RETURN answer;
END
$$;

-- The SQL edition reaches its rows through views that show each role its own barriers
-- (barrier_internal.my_*); Citus plans no write through a view, and a barrier's owner (a role
-- oid) means nothing on another node. On a node whose tables are distributed, the SQL edition's
-- functions are re-created to use the tables themselves, and the lines its source marks
-- `-- citus: ` (the role check and the shard lock, which a single server need not pay for) are
-- switched on: only roles with the tables' owner's privileges may then call pg_barrier, and they
-- may act on every barrier, as the owner can. Returns how many functions it changed; the Rust
-- build has none to change, and a node whose tables are not distributed is left alone.
CREATE FUNCTION barrier_internal.write_tables_directly() RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    views CONSTANT text := 'barrier_internal\.my_(barrier_spec|barrier|result)\M';
    switch CONSTANT text := '(\n\s*)-- citus: ';
    f pg_catalog.regprocedure;
    changed integer := 0;
    propagation text := pg_catalog.current_setting('citus.enable_ddl_propagation', true);
BEGIN
    IF NOT barrier_internal.distributed() THEN
        RETURN 0;
    END IF;
    -- Each node's copy is rewritten on that node (barrier_distribute runs this on every one);
    -- Citus is not to send it on, and refuses it on a worker unless told so.
    PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
    FOR f IN
        SELECT p.oid::pg_catalog.regprocedure
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_depend AS d
            ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
          JOIN pg_catalog.pg_extension AS e
            ON e.oid OPERATOR(pg_catalog.=) d.refobjid
           AND e.extname OPERATOR(pg_catalog.=) 'pg_barrier'
         WHERE p.prosrc OPERATOR(pg_catalog.~) views OR p.prosrc OPERATOR(pg_catalog.~) switch
         ORDER BY 1
    LOOP
        EXECUTE pg_catalog.regexp_replace(
                    pg_catalog.regexp_replace(pg_catalog.pg_get_functiondef(f), views,
                                              'barrier_internal.\1', 'g'),
                    switch, '\1', 'g');
        changed := changed + 1;
    END LOOP;
    PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', coalesce(propagation, 'on'), true);
    RETURN changed;
END
$$;

-- Distributes the state tables by barrier id (one colocation group of `shard_count` shards),
-- delegates every API function whose first argument is a barrier id to the node that holds it,
-- and empties the coordinator's local copies of the tables. Run on the coordinator, by a role
-- with the tables' owner's privileges, once after CREATE EXTENSION pg_barrier (barriers in flight
-- move with it) and again after every ALTER EXTENSION pg_barrier UPDATE and every node added: it
-- does what is missing and leaves the rest. Nested barriers are not supported on Citus (a
-- parent's slot is claimed through a unique index that cannot span shards): it refuses while any
-- is in flight, and barrier_enqueue refuses `parent` afterwards.
CREATE FUNCTION barrier_distribute(shard_count integer DEFAULT 32)
RETURNS TABLE (step text, detail text)
LANGUAGE plpgsql
SET search_path TO pg_catalog, pg_temp
AS $$
DECLARE
    tables CONSTANT regclass[] := ARRAY['barrier_internal.barrier', 'barrier_internal.barrier_spec',
                                        'barrier_internal.result']::regclass[];
    columns CONSTANT text[] := ARRAY['id', 'id', 'barrier_id'];
    i integer;
    f regprocedure;
    node record;
    changed integer;
BEGIN
    IF shard_count IS NULL OR shard_count < 1 OR shard_count > 64000 THEN
        RAISE EXCEPTION 'barrier_distribute: shard_count must be between 1 and 64000, not %',
                        coalesce(shard_count::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension
                    WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'barrier_distribute: Citus is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run CREATE EXTENSION citus and add the worker nodes first.';
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO STRICT node;
    IF NOT node.citus_is_coordinator THEN
        RAISE EXCEPTION 'barrier_distribute: run it on the coordinator'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF NOT pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class AS c
                                    WHERE c.oid OPERATOR(pg_catalog.=) tables[1]), 'USAGE') THEN
        RAISE EXCEPTION 'barrier_distribute: only a role with the privileges of the owner of pg_barrier''s tables may distribute them'
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    IF NOT barrier_internal.distributed() THEN
        -- Nothing changes under the copy; a nested barrier cannot be enqueued meanwhile.
        LOCK TABLE barrier_internal.barrier, barrier_internal.barrier_spec,
                   barrier_internal.result IN EXCLUSIVE MODE;
        IF EXISTS (SELECT FROM barrier_internal.barrier_spec AS s
                     JOIN barrier_internal.barrier AS b ON b.id OPERATOR(pg_catalog.=) s.id
                    WHERE s.parent IS NOT NULL AND b.status OPERATOR(pg_catalog.=) 'pending') THEN
            RAISE EXCEPTION 'barrier_distribute: nested barriers are in flight, and Citus cannot keep their parents'' slots'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Let them finish (or abort them), then distribute.';
        END IF;
        -- A parent's slot is claimed once through this index; a unique index must include the
        -- distribution column on Citus. Nesting is refused from here on.
        DROP INDEX IF EXISTS barrier_internal.barrier_spec_parent;
        -- The SQL edition's ownership triggers fire where the rows are, on the shards.
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
        FOR i IN 1 .. 3 LOOP
            IF i = 1 THEN
                EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2, shard_count => $3,
                                                                   colocate_with => ''none'')'
                  USING tables[i], columns[i], shard_count;
            ELSE
                EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2,
                                                                   colocate_with => $3)'
                  USING tables[i], columns[i], tables[1]::text;
            END IF;
            -- Rows there before stay in the coordinator's own heap, unseen by SQL.
            EXECUTE 'SELECT pg_catalog.truncate_local_data_after_distributing_table($1)'
              USING tables[i];
            step := 'distributed';
            detail := tables[i]::text || ' by ' || columns[i];
            RETURN NEXT;
        END LOOP;
    ELSE
        step := 'kept';
        detail := 'the tables were distributed already';
        RETURN NEXT;
    END IF;

    changed := barrier_internal.write_tables_directly();
    IF changed > 0 THEN
        step := 'rewrote';
        detail := changed || ' functions on the coordinator to use the tables directly';
        RETURN NEXT;
    END IF;
    FOR node IN
        EXECUTE 'SELECT nodename, nodeport, success, result
                   FROM pg_catalog.run_command_on_workers(
                        ''SELECT barrier_internal.write_tables_directly()'')'
    LOOP
        IF NOT node.success THEN
            RAISE EXCEPTION 'barrier_distribute: could not prepare worker %:%', node.nodename,
                            node.nodeport
                USING ERRCODE = 'connection_failure', DETAIL = node.result;
        END IF;
        IF node.result <> '0' THEN
            step := 'rewrote';
            detail := node.result || ' functions on ' || node.nodename || ':' || node.nodeport;
            RETURN NEXT;
        END IF;
    END LOOP;

    -- Every API function that names one barrier runs where that barrier's shard is.
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_depend AS d
            ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
          JOIN pg_catalog.pg_extension AS e
            ON e.oid OPERATOR(pg_catalog.=) d.refobjid
           AND e.extname OPERATOR(pg_catalog.=) 'pg_barrier'
         WHERE p.pronamespace OPERATOR(pg_catalog.<>) 'barrier_internal'::regnamespace
           AND p.proargnames[1] OPERATOR(pg_catalog.=) 'id'
         ORDER BY 1
    LOOP
        EXECUTE 'SELECT pg_catalog.create_distributed_function($1::pg_catalog.regprocedure, ''id'',
                                                                  colocate_with => $2)'
          USING f::text, tables[1]::text;
        step := 'delegated';
        detail := f::text;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Where the tables are distributed: holds, until the end of the transaction, the metadata lock of
-- barrier `id`'s shard in the mode every write to that shard takes it (ShareLock, 5). A shard
-- move takes it exclusively while it blocks writes: the move then waits for a call already
-- holding it, and a call that comes during the move waits for the move and then finds the
-- barrier on its new node. Without it a call could lock and read a barrier on the old node and
-- write it on the new one, after the move copied it: a report lost, or counted twice
-- (tests/citus.rs caught it). Every call that changes a barrier takes it first, in both
-- editions, as do the sweep and the completion queue for each barrier they lock.
-- The shard is looked up again once its lock is held: a shard split that ended meanwhile gave
-- the barrier another shard, whose lock is then taken too.
CREATE FUNCTION barrier_internal.hold_shard(id text) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    shard CONSTANT text := 'SELECT pg_catalog.get_shard_id_for_distribution_column(
                                       ''barrier_internal.barrier'', $1)';
    held bigint;
    now_in bigint;
BEGIN
    EXECUTE shard INTO now_in USING id;
    LOOP
        held := now_in;
        EXECUTE 'SELECT pg_catalog.lock_shard_metadata(5, ARRAY[$1])' USING held;
        EXECUTE shard INTO now_in USING id;
        EXIT WHEN now_in = held;
    END LOOP;
END
$$;
