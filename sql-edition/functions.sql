-- pg_barrier, SQL edition: the public API of the Rust build, in PL/pgSQL, over the same tables.
--
-- How it is held to the Rust build:
-- * the state tables are src/schema.sql itself, included when the scripts are generated
--   (scripts/sql-edition.sh), so data moves between the editions as it is;
-- * every public function has the Rust function's name, arguments, defaults, result columns,
--   volatility and parallel safety; the integration suite compares the two catalogs and runs
--   against both editions;
-- * messages and SQLSTATEs are the Rust build's, word for word.
--
-- Security. The caller is current_user, as in the Rust build: the role a call really runs as,
-- also inside another role's SECURITY DEFINER function and in an index expression that ANALYZE,
-- REINDEX or autovacuum evaluates (as the table's owner). PL/pgSQL cannot switch roles inside a
-- function the way the Rust build does, so the public functions are SECURITY INVOKER and reach
-- the state through three views in barrier_internal (my_barrier, my_barrier_spec, my_result),
-- owned by the state tables' owner, which show (and, with the triggers on the result and spec
-- tables, accept) only rows of barriers the current user may act on: its own, those of roles whose privileges it has, all for a superuser (the
-- Rust build's rule). The tables themselves stay closed to PUBLIC. Each public function pins
-- search_path to pg_catalog, pg_temp, names every object by schema, runs no dynamic SQL and
-- passes every value as a parameter.
--
-- Consequence: a role can read and write its own barriers' rows through those views, by hand,
-- within the tables' constraints. For barriers a role writes that way, the API's guarantees
-- (exactly one completer, no double count) are that role's own business; it can never read or
-- change another role's rows, and what it writes must not break calls that reach every role's
-- barriers (a superuser's barrier_sweep, barrier_completions, barrier_stats), which therefore
-- expect anything the constraints allow: a pending barrier without its spec, a spec or results
-- without a barrier, any channel, interval or timestamp.
--
-- Two helpers run as the tables' owner (SECURITY DEFINER, search_path pinned), each for one
-- thing a caller's privileges cannot do: barrier_internal.barrier_exists (whether an id is taken,
-- so that a call on another role's barrier fails with 42501 as in the Rust build, not as unknown)
-- and barrier_internal.sweep_as_owner (anyone's barrier_sweep reaches every role's barriers, as
-- in the Rust build, with the retention stored by a superuser, never one set in the session).
-- Triggers on the result and spec tables check every write, by the API or by hand, against the
-- barrier's newest row (see check_result_write).
-- The other helpers are SECURITY INVOKER: PUBLIC may run them, and they can do nothing the
-- caller could not do through the views. They carry no SET clause of their own (one costs a
-- search_path switch per call): they run inside the API's calls, under the path those pin.
--
-- Every function and view here is created with CREATE, never CREATE OR REPLACE: an object
-- someone created beforehand under one of these names makes the install fail.
--
-- Ids and channels are compared byte for byte, as the Rust build does, whatever collation a
-- caller attaches to an argument: each function first copies them into COLLATE "C" variables of
-- the same name.
--
-- The views take INSERT ... ON CONFLICT with the arbiter inferred from columns, which are named
-- through the statement's alias, ((b.id)): a bare name would be read as the PL/pgSQL variable of
-- the same name, and ON CONSTRAINT names no constraint of a view.
--
-- Speed: the common report (a success into a plain, sealed barrier that leaves work to go) runs
-- one statement in barrier_decr itself, which locks the row, records the result and counts it;
-- the result insert fires the ownership trigger (check_result_write: one more statement). Every
-- other report goes to barrier_internal.report, which a child's hand-up into its parent shares:
-- three statements and the decision of docs/shapes.md. Around those statements everything is
-- inline or an inlinable SQL function; other PL/pgSQL helpers are called only to raise errors,
-- read settings that are set, or end a round. What the rest costs, and which guarantee each part
-- buys: docs/performance.md.
--
-- Fan-in shapes (docs/shapes.md): failures, quorum, open fan-ins, delivering expiry and nested
-- barriers. A child's end is reported into its parent by barrier_internal.hand_up, through the
-- same views, in the transaction that ends the child's round. The sweep ends barriers in the
-- tables themselves; one with a parent it ends through the views instead, so that the parent
-- hears of it, which needs a sweeping role that may act on the barrier (a superuser; the tables'
-- owner when it is one). Where the tables' owner is not a superuser (pg_tle, the plain schema
-- script), a sweep expires another role's nested barrier without telling its parent, with a
-- warning; an expiry found by any call of the barrier's own role (lazily) tells it.

-- The state as the current user may see and change it: the rows of barriers it may act on
-- (pg_has_role USAGE: the barrier's owner, an inheriting member of it, or a superuser).
-- my_barrier's check option holds new and changed barriers to the same rule, so no role can
-- create a barrier for another role or give it one; writes of results and specs are held to it
-- by the triggers below, on the tables, before the row is written (a check option would decide
-- on a snapshot that may be old, and after the unique check). security_barrier keeps a caller's
-- own conditions from seeing rows before that filter (leakproof ones such as `id = $1` still
-- reach the indexes).
CREATE VIEW barrier_internal.my_barrier WITH (security_barrier) AS
    SELECT * FROM barrier_internal.barrier AS b
     WHERE pg_catalog.pg_has_role(b.owner::pg_catalog.oid, 'USAGE')
    WITH CASCADED CHECK OPTION;
COMMENT ON VIEW barrier_internal.my_barrier IS
    'pg_barrier state: the barriers the current user may act on (SQL edition)';

CREATE VIEW barrier_internal.my_barrier_spec WITH (security_barrier) AS
    SELECT * FROM barrier_internal.barrier_spec AS s
     WHERE EXISTS (SELECT FROM barrier_internal.barrier AS b
                    WHERE b.id OPERATOR(pg_catalog.=) s.id
                      AND pg_catalog.pg_has_role(b.owner::pg_catalog.oid, 'USAGE'));
COMMENT ON VIEW barrier_internal.my_barrier_spec IS
    'pg_barrier state: the specs of the barriers the current user may act on (SQL edition)';

CREATE VIEW barrier_internal.my_result WITH (security_barrier) AS
    SELECT * FROM barrier_internal.result AS r
     WHERE EXISTS (SELECT FROM barrier_internal.barrier AS b
                    WHERE b.id OPERATOR(pg_catalog.=) r.barrier_id
                      AND pg_catalog.pg_has_role(b.owner::pg_catalog.oid, 'USAGE'));
COMMENT ON VIEW barrier_internal.my_result IS
    'pg_barrier state: the results of the barriers the current user may act on (SQL edition)';

-- Whether barrier `id` exists, whoever owns it. Runs as the tables' owner: a call that finds no
-- barrier through the views learns from it whether the id is another role's (42501) or free, as
-- the Rust build tells them apart. It says nothing more than that answer does.
-- (PL/pgSQL, not SQL: Citus cannot plan a SQL function's parameterised query on its tables.)
CREATE FUNCTION barrier_internal.barrier_exists(id text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM barrier_internal.barrier AS b
                    WHERE b.id OPERATOR(pg_catalog.=) (barrier_exists.id COLLATE "C"));
END
$$;

-- Whether the current user has the privileges of the state tables' owner (is it, an inheriting
-- member of it, or a superuser): it may then read and change the tables themselves, and its
-- session's values of the superuser-only settings count.
CREATE FUNCTION barrier_internal.has_owner_privileges() RETURNS boolean
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
      FROM pg_catalog.pg_class AS c
     WHERE c.oid OPERATOR(pg_catalog.=) 'barrier_internal.barrier'::pg_catalog.regclass
$$;

-- Raises one of the API's errors; `message` already starts with the function's name.
CREATE FUNCTION barrier_internal.raise(code text, message text, detail text DEFAULT NULL,
                                       hint text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF detail IS NULL AND hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
    ELSIF detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, HINT = hint;
    ELSIF hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, DETAIL = detail;
    ELSE
        RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, DETAIL = detail, HINT = hint;
    END IF;
END
$$;

-- Ids are caller-supplied and may be long: messages quote at most the first 64 characters.
CREATE FUNCTION barrier_internal.shown(id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.char_length(id) OPERATOR(pg_catalog.>) 64
                THEN pg_catalog.left(id, 64) OPERATOR(pg_catalog.||) '...' ELSE id END
$$;

-- A barrier id: not NULL, not empty, at most 512 bytes.
CREATE FUNCTION barrier_internal.check_id(fn text, id text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF id IS NULL THEN
        PERFORM barrier_internal.raise('22004', fn || ': argument "id" must not be NULL');
    ELSIF id = '' THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "id": must not be empty');
    ELSIF octet_length(id) > 512 THEN
        PERFORM barrier_internal.raise('22001', fn || ': argument "id" is too long ('
            || octet_length(id) || ' bytes, the limit is 512)');
    END IF;
END
$$;

-- A count that must be at least 1 (max_rows, extra).
-- A quorum or an expiry that delivers hands out a null and a missing slot for each slot that did
-- not report, in one completion: such a barrier has at most 10,000,000 slots.
CREATE FUNCTION barrier_internal.padded_slots(fn text, argument text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    PERFORM barrier_internal.raise('54000', fn || ': argument "' || argument
        || '" would give the barrier more than 10000000 slots',
        'A barrier with need or on_expiry => ''deliver'' hands out a null and a missing slot for each slot that did not report, in one completion.');
END
$$;

CREATE FUNCTION barrier_internal.check_positive(fn text, argument text, value integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF value IS NULL THEN
        PERFORM barrier_internal.raise('22004',
            fn || ': argument "' || argument || '" must not be NULL');
    ELSIF value < 1 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "' || argument || '": must be >= 1, got ' || value);
    END IF;
END
$$;

-- Calls that change barriers are refused up front in a read-only transaction (also every
-- transaction on a hot standby), with the Rust build's message.
CREATE FUNCTION barrier_internal.check_writable(fn text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        PERFORM barrier_internal.raise('25006',
            fn || ': cannot change barriers in a read-only transaction', NULL,
            'On a hot standby, call it on the primary; reading functions work anywhere.');
    END IF;
    -- citus: PERFORM barrier_internal.check_citus_role(fn);
END
$$;

-- Lines marked `-- citus: ` are comments on a single server, which pays nothing for them; where
-- Citus distributes the state tables, barrier_distribute switches them on (src/distribute.sql,
-- write_tables_directly): the role check, the shard lock, the refusal of nesting, and the end of
-- barrier_decr's one-statement report.

-- Where Citus distributes the state tables, only roles with the privileges of their owner may
-- call: a barrier's owner is a role oid, and oids differ from node to node; the functions also
-- use the tables directly there (src/distribute.sql). (hold_barrier, below, checks it again: it
-- runs first in the report path, which skips check_writable outside read-only transactions.)
CREATE FUNCTION barrier_internal.check_citus_role(fn text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    IF NOT barrier_internal.has_owner_privileges() THEN
        PERFORM barrier_internal.raise('42501',
            fn || ': where Citus distributes pg_barrier''s tables, only roles with the privileges of their owner may call it',
            NULL,
            'Call as the owner of the barrier_internal tables, as a member of it, or as a superuser (docs/scale-out.md).');
    END IF;
END
$$;

-- Where Citus distributes the state tables: the caller's role checked, and barrier `id`'s shard
-- held until the transaction ends (barrier_internal.hold_shard in src/distribute.sql says why).
-- Every call that changes a barrier runs it (a `-- citus: ` line) before it reads the barrier, as
-- do the sweep and the completion queue for each barrier they lock.
CREATE FUNCTION barrier_internal.hold_barrier(fn text, id text) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM barrier_internal.check_citus_role(fn);
    PERFORM barrier_internal.hold_shard(id);
END
$$;

-- A call on another role's barrier.
CREATE FUNCTION barrier_internal.deny(fn text, id text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    PERFORM barrier_internal.raise('42501',
        fn || ': permission denied for barrier "' || barrier_internal.shown(id) || '"',
        'A barrier belongs to the role that enqueued it.',
        'Call as that role, as a member of it, or as a superuser.');
END
$$;

-- What a call does when its query through the views found no barrier `id`, at its `tried`th
-- miss: false if no barrier has that id (the call answers as for an unknown barrier); true at
-- the first miss if one does (it may have been created since the query's snapshot: query
-- again); 42501 at the second, when it is still there and still not visible: another role's.
CREATE FUNCTION barrier_internal.hidden(fn text, id text, tried integer) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
BEGIN
    IF NOT barrier_internal.barrier_exists(id) THEN
        RETURN false;
    END IF;
    IF tried >= 2 THEN
        PERFORM barrier_internal.deny(fn, id);
    END IF;
    RETURN true;
END
$$;

-- A pg_barrier.* setting as a whole number of its base unit (seconds or bytes).
--
-- Without the Rust library nothing defines these settings: they are placeholders that any
-- role may SET to any text, and they are checked here, when used, not at SET time. Values
-- are read as PostgreSQL reads them: a number, optionally with a unit ('30s', '5min', '2h',
-- '1d'; '512B', '4kB', '1MB', '1GB').
--
-- `source`, where the value may come from:
-- * 'session': the session's value (the user settings: channel, default_ttl, stall_timeout);
-- * 'trusted': a superuser-only setting in the Rust build (retention, max_result_bytes): the
--   session's value if the current user has the privileges of the state tables' owner, else as
--   'stored';
-- * 'stored': only a value stored with ALTER ROLE / ALTER DATABASE, which on PostgreSQL 15 only
--   a superuser (or a role granted SET on the parameter) can store for a placeholder, else the
--   built-in default. Never a value set in the session.
CREATE FUNCTION barrier_internal.setting(fn text, name text, fallback bigint, minimum bigint,
                                         maximum bigint, unit text, source text)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    raw text;
    parts text[];
    factor numeric;
    value numeric;
BEGIN
    -- Set nowhere, neither stored nor in the session: the default, without reading the catalog.
    raw := current_setting(name, true);
    IF raw IS NULL THEN
        RETURN fallback;
    END IF;
    IF source = 'stored' OR (source = 'trusted' AND NOT barrier_internal.has_owner_privileges())
    THEN
        -- The value stored with the precedence PostgreSQL applies at login: database and role,
        -- role, database, all.
        raw := NULL;
        SELECT substr(c.item, length(name) + 2)
          INTO raw
          FROM pg_db_role_setting AS s
         CROSS JOIN LATERAL unnest(s.setconfig) AS c(item)
         WHERE s.setdatabase IN (0, (SELECT d.oid FROM pg_database AS d
                                      WHERE d.datname = current_database()))
           AND s.setrole IN (0, to_regrole(quote_ident(session_user))::oid)
           AND starts_with(c.item, name || '=')
         ORDER BY s.setrole = 0, s.setdatabase = 0
         LIMIT 1;
    END IF;
    IF raw IS NULL OR raw = '' THEN
        RETURN fallback;
    END IF;
    IF raw ~ '^[0-9]{1,18}$' THEN
        value := raw::bigint;
    ELSE
        parts := regexp_match(raw, '^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$');
        factor := CASE
            WHEN parts IS NULL THEN NULL
            WHEN unit = 's' THEN CASE parts[2] WHEN '' THEN 1 WHEN 's' THEN 1 WHEN 'ms' THEN 0.001
                                               WHEN 'us' THEN 0.000001 WHEN 'min' THEN 60
                                               WHEN 'h' THEN 3600 WHEN 'd' THEN 86400 END
            ELSE CASE parts[2] WHEN '' THEN 1 WHEN 'B' THEN 1 WHEN 'kB' THEN 1024
                               WHEN 'MB' THEN 1048576 WHEN 'GB' THEN 1073741824
                               WHEN 'TB' THEN 1099511627776 END
        END;
        IF factor IS NULL THEN
            PERFORM barrier_internal.raise('22023',
                fn || ': invalid argument "' || name || '": "' || raw || '" is not a valid value',
                NULL, 'Give a whole number of ' || CASE unit WHEN 's' THEN 'seconds' ELSE 'bytes' END
                      || ', optionally with a unit.');
        END IF;
        value := round(parts[1]::numeric * factor);
    END IF;
    IF value < minimum OR value > maximum THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "' || name || '": ' || value || ' is outside the valid range '
            || minimum || ' .. ' || maximum);
    END IF;
    RETURN value;
END
$$;

-- The uncompressed size of a jsonb value, as the Rust build measures it (the value as one
-- plain varlena with a 4-byte header): an argument can arrive compressed, stored out of line or
-- with a short header, which pg_column_size would count as stored.
CREATE FUNCTION barrier_internal.jsonb_bytes(value jsonb) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.pg_column_size(value::text::jsonb)::bigint
$$;

-- A result or callback within pg_barrier.max_result_bytes.
CREATE FUNCTION barrier_internal.check_size(fn text, argument text, value jsonb) RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    limit_bytes bigint;
    size bigint;
BEGIN
    IF value IS NULL THEN
        RETURN 0;
    END IF;
    limit_bytes := barrier_internal.setting(fn, 'pg_barrier.max_result_bytes', 1048576, 1,
                                            2147483647, 'B', 'trusted');
    size := barrier_internal.jsonb_bytes(value);
    IF size > limit_bytes THEN
        PERFORM barrier_internal.raise('54000',
            fn || ': argument "' || argument || '" is ' || size
               || ' bytes, over pg_barrier.max_result_bytes (' || limit_bytes || ')',
            NULL,
            'Store large results elsewhere and report a reference, or raise pg_barrier.max_result_bytes.');
    END IF;
    RETURN size;
END
$$;

-- A ttl or stall_timeout: every part >= 0, not zero, at most 100 years (a month counted as 30
-- days, a day as 24 hours, as PostgreSQL orders intervals).
CREATE FUNCTION barrier_internal.check_interval(fn text, argument text, value interval)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    months numeric := extract(year FROM value) * 12 + extract(month FROM value);
    days numeric := extract(day FROM value);
    micros numeric;
    span numeric;
BEGIN
    -- PostgreSQL 17's infinite intervals, refused as the Rust build refuses them.
    IF NOT isfinite(value) THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "' || argument || '": '
            || CASE WHEN value < interval '0' THEN 'must be a positive interval with no negative part'
                    ELSE 'must be at most 100 years' END);
    END IF;
    micros := extract(epoch FROM value - make_interval(months => months::integer,
                                                      days => days::integer)) * 1000000;
    IF months < 0 OR days < 0 OR micros < 0 THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "' || argument
            || '": must be a positive interval with no negative part');
    END IF;
    span := months * 30 * 86400000000 + days * 86400000000 + micros;
    IF span = 0 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "' || argument || '": must be a positive interval');
    END IF;
    IF span > 100::numeric * 12 * 30 * 86400000000 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "' || argument || '": must be at most 100 years');
    END IF;
    RETURN value;
END
$$;

-- Queues the wake-up of a terminal transition; the payload never carries results. A channel or
-- id that the API would never have stored (written by hand through the views, or missing with
-- the spec) gets no notification rather than an error: the sweep ends every role's barriers.
CREATE FUNCTION barrier_internal.notify(channel text, id text, status text, round bigint)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$
    SELECT pg_catalog.pg_notify(channel, pg_catalog.json_build_object(
               'id', id, 'status', status, 'round', round)::text)
     WHERE pg_catalog.octet_length(channel) OPERATOR(pg_catalog.<=) 63
       AND channel OPERATOR(pg_catalog.<>) ''
       AND pg_catalog.octet_length(id) OPERATOR(pg_catalog.<=) 512
$$;

-- Ends round `round` of a locked, live barrier as aborted or expired: frees its results (an
-- expiry with on_expiry => 'deliver' keeps them, to be taken), keeps a tombstone so that late
-- calls learn what happened, notifies, and reports the end into the barrier's parent, if any.
-- `level`: the parents reached so far from the call that started it (see hand_up).
CREATE FUNCTION barrier_internal.end_round(fn text, id text, round bigint, status text,
                                           reason text, level integer)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    ended record;
    the_channel text;
    the_parent text;
    the_slot integer;
    done record;
BEGIN
    UPDATE barrier_internal.my_barrier AS b
       SET status = end_round.status, finished_at = statement_timestamp(),
           result_bytes = CASE WHEN end_round.status = 'expired' AND b.deliver
                               THEN b.result_bytes ELSE 0 END
     WHERE b.id = end_round.id
    RETURNING end_round.status = 'expired' AND b.deliver AS keep, b.owner, b.expected,
              b.remaining, b.failed
         INTO ended;
    UPDATE barrier_internal.my_barrier_spec AS s SET reason = end_round.reason
     WHERE s.id = end_round.id
    RETURNING s.channel, s.parent, s.parent_slot INTO the_channel, the_parent, the_slot;
    IF ended.keep IS NOT TRUE THEN
        DELETE FROM barrier_internal.my_result AS r WHERE r.barrier_id = end_round.id;
    END IF;
    PERFORM barrier_internal.notify(the_channel, end_round.id, end_round.status, end_round.round);
    IF the_parent IS NULL THEN
        RETURN;
    END IF;
    IF ended.keep THEN
        -- A delivered expiry: the parent gets what a consumer would take.
        done := barrier_internal.completion(end_round.id, ended.expected, ended.remaining,
                                            ended.failed);
        PERFORM barrier_internal.hand_up(fn, end_round.id, end_round.round, ended.owner,
            the_parent, the_slot, end_round.status, NULL, done.results, done.failed_slots,
            done.errors, done.missing_slots, false, level);
    ELSE
        PERFORM barrier_internal.hand_up(fn, end_round.id, end_round.round, ended.owner,
            the_parent, the_slot, end_round.status, end_round.reason, NULL, NULL, NULL, NULL,
            false, level);
    END IF;
END
$$;

-- What a finished round hands out (docs/shapes.md), with the spec's callback, channel and
-- parent: `results` has one element per slot 0 .. expected - 1 (arrival position for a barrier
-- counted without slots), JSON null where the slot failed or never reported; the failed slots,
-- their errors and the slots that never reported beside it. A round where every task reported
-- and none failed (every plain barrier) is every result in slot order, as in 0.3.
CREATE FUNCTION barrier_internal.completion(id text, expected integer, remaining integer,
                                            failed integer, OUT channel text,
                                            OUT callback jsonb, OUT results jsonb,
                                            OUT failed_slots integer[], OUT errors jsonb,
                                            OUT missing_slots integer[], OUT parent text,
                                            OUT parent_slot integer)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
#variable_conflict use_variable
BEGIN
    IF remaining = 0 AND failed = 0 THEN
        SELECT s.channel, s.callback, s.parent, s.parent_slot,
               COALESCE((SELECT jsonb_agg(r.result ORDER BY r.slot)
                           FROM barrier_internal.my_result AS r
                          WHERE r.barrier_id = completion.id), '[]'::jsonb)
          INTO channel, callback, parent, parent_slot, results
          FROM barrier_internal.my_barrier_spec AS s
         WHERE s.id = completion.id;
        failed_slots := '{}';
        errors := '[]';
        missing_slots := '{}';
        RETURN;
    END IF;
    SELECT s.channel, s.callback, s.parent, s.parent_slot
      INTO channel, callback, parent, parent_slot
      FROM barrier_internal.my_barrier_spec AS s
     WHERE s.id = completion.id;
    SELECT COALESCE(jsonb_agg(CASE WHEN r.failed IS NOT FALSE THEN NULL ELSE r.result END
                              ORDER BY g.slot), '[]'::jsonb),
           COALESCE(array_agg(g.slot ORDER BY g.slot) FILTER (WHERE r.failed), '{}'),
           COALESCE(jsonb_agg(r.result ORDER BY g.slot) FILTER (WHERE r.failed), '[]'::jsonb),
           COALESCE(array_agg(g.slot ORDER BY g.slot) FILTER (WHERE r.slot IS NULL), '{}')
      INTO results, failed_slots, errors, missing_slots
      FROM generate_series(0, expected - 1) AS g(slot)
      LEFT JOIN barrier_internal.my_result AS r
        ON r.barrier_id = completion.id AND r.slot = g.slot;
END
$$;

-- Completes a locked barrier whose counters are stored as complete: builds its completion,
-- notifies it, and hands it up to the barrier's parent, if any.
CREATE FUNCTION barrier_internal.complete(fn text, id text, round bigint, owner regrole,
                                          expected integer, remaining integer, failed integer,
                                          level integer, OUT status text, OUT results jsonb,
                                          OUT callback jsonb, OUT failed_slots integer[],
                                          OUT errors jsonb, OUT missing_slots integer[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    done record;
BEGIN
    done := barrier_internal.completion(id, expected, remaining, failed);
    status := CASE WHEN failed > 0 THEN 'complete_with_failures' ELSE 'complete' END;
    PERFORM barrier_internal.notify(done.channel, id, status, round);
    results := done.results;
    callback := done.callback;
    failed_slots := done.failed_slots;
    errors := done.errors;
    missing_slots := done.missing_slots;
    IF done.parent IS NOT NULL THEN
        PERFORM barrier_internal.hand_up(fn, id, round, owner, done.parent, done.parent_slot,
            status, NULL, results, failed_slots, errors, missing_slots, failed = 0, level);
    END IF;
END
$$;

-- Reports how round `round` of locked barrier `id` (owned by `owner`) ended, with `status`,
-- into slot `parent_slot` of its parent, as a report that succeeds or (not `success`) fails,
-- under the parent's policy; see barrier_internal.report. A round that can be taken (a
-- completion or a delivered expiry) comes with its completion (`results`, `failed_slots`,
-- `errors`, `missing_slots`), any other with its `reason`; the value the parent records is
-- built from them under the parent's lock. A takeable round that the parent counted is handed
-- over: marked taken, its results freed. `level` counts the parents reached so far; in a tree
-- that grew deeper than 16 levels (an ancestor enqueued again under a new parent) the climb
-- stops with a WARNING, the round staying takeable, rather than failing every report of the
-- leaf.
CREATE FUNCTION barrier_internal.hand_up(fn text, id text, round bigint, owner regrole,
                                         parent text, parent_slot integer, status text,
                                         reason text, results jsonb, failed_slots integer[],
                                         errors jsonb, missing_slots integer[],
                                         success boolean, level integer)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    takeable constant boolean := results IS NOT NULL;
    counted boolean;
BEGIN
    IF level >= 16 THEN
        RAISE WARNING 'pg_barrier: barrier "%" is nested more than 16 levels deep: its end is not reported into barrier "%"',
            barrier_internal.shown(id), barrier_internal.shown(parent);
        RETURN;
    END IF;
    SELECT r.counted INTO counted
      FROM barrier_internal.report(fn, parent, parent_slot, NULL, NOT success, NULL, level + 1,
                                   owner, id, round, status, reason, results, failed_slots,
                                   errors, missing_slots) AS r;
    IF counted AND takeable THEN
        UPDATE barrier_internal.my_barrier AS b
           SET taken_at = statement_timestamp(), result_bytes = 0
         WHERE b.id = hand_up.id;
        DELETE FROM barrier_internal.my_result AS r WHERE r.barrier_id = hand_up.id;
    END IF;
END
$$;

-- One report into barrier `id`: at `level` 0 a task's (barrier_decr, after its argument checks;
-- `result`, and `size`: its size), above it a child's hand-up into its parent (`owner`: the
-- child's owner; `child` .. `child_missing_slots`: how its round ended, see hand_up), which
-- never fails: a parent that is gone, finished, of another owner, counted without slots or
-- without that slot, or whose slot reported, does not count it (`counted` false); a completion
-- that might take the parent's results over the limit is reported as a failure that says so,
-- and a value that would still not fit is not counted either. Locks the barrier, counts the
-- report (a success replaces a failure of its slot) and ends the round when the barrier's shape
-- says so: a failure over max_failures or a quorum out of reach aborts it; a sealed barrier
-- completes when every task has reported or when the quorum is met (docs/shapes.md).
--
-- A barrier whose completion may leave slots out (need, or on_expiry => 'deliver') pads it with
-- a JSON null for each, 4 bytes apiece in the jsonb array: its reports keep that much room free
-- under the limit (4 bytes per expected task), beside the results they record.
CREATE FUNCTION barrier_internal.report(fn text, id text, slot integer, result jsonb,
                                        failed boolean, size bigint, level integer,
                                        owner regrole, child text DEFAULT NULL,
                                        child_round bigint DEFAULT NULL,
                                        child_status text DEFAULT NULL,
                                        child_reason text DEFAULT NULL,
                                        child_results jsonb DEFAULT NULL,
                                        child_failed_slots integer[] DEFAULT NULL,
                                        child_errors jsonb DEFAULT NULL,
                                        child_missing_slots integer[] DEFAULT NULL,
                                        OUT status text, OUT remaining integer,
                                        OUT results jsonb, OUT callback jsonb,
                                        OUT failed_slots integer[], OUT errors jsonb,
                                        OUT missing_slots integer[], OUT counted boolean)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    -- Bound once: Citus refuses a non-IMMUTABLE function inside CASE in a write.
    statement_time constant timestamptz := statement_timestamp();
    handup constant boolean := level > 0;
    tried integer := 0;
    locked record;
    position integer;
    weight bigint;
    reserve bigint;
    estimate bigint;
    rearmed boolean := false;
    now_failed integer;
    successes integer;
    max_failures integer;
    ending text;
    reason text;
    done record;
BEGIN
    counted := false;
    LOOP
        SELECT b.status, b.expected, b.remaining, b.slotted, b.round, b.owner,
               b.status = 'pending' AND b.expires_at <= statement_timestamp() AS past_expiry,
               b.result_bytes, b.failed, b.need, b.sealed, b.deliver
          INTO locked
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id
           FOR NO KEY UPDATE;
        EXIT WHEN FOUND;
        IF handup THEN
            RETURN;
        END IF;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, id, tried) THEN
            status := 'unknown';
            RETURN;
        END IF;
    END LOOP;

    IF handup THEN
        IF locked.slotted IS FALSE OR slot >= locked.expected OR locked.owner <> owner THEN
            RETURN;
        END IF;
    -- A barrier is slotted or not from its first report on, and slots run from 0 to
    -- expected - 1; a report that breaks either is a bad argument whatever the state.
    ELSIF locked.slotted AND slot IS NULL THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "slot": barrier "'
            || id || '" is slotted: every report must name its slot', NULL,
            'One barrier is either slotted or not; pass the task''s slot.');
    ELSIF NOT locked.slotted AND slot IS NOT NULL THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "slot": barrier "'
            || id || '" is counted without slots: reports must not name one', NULL,
            'One barrier is either slotted or not; pass slot => NULL.');
    ELSIF slot >= locked.expected THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "slot": ' || slot
            || ' is out of range: the barrier expects ' || locked.expected || ' tasks, slots 0 to '
            || (locked.expected - 1));
    END IF;

    IF locked.status <> 'pending' OR locked.past_expiry THEN
        IF locked.status = 'pending' THEN
            PERFORM barrier_internal.end_round(fn, id, locked.round, 'expired', NULL, level);
        END IF;
        IF handup THEN
            RETURN;
        END IF;
        IF locked.status = 'complete' THEN
            -- A retried task whose slot was counted learns just that, before or after the fire.
            IF slot IS NOT NULL AND EXISTS (SELECT FROM barrier_internal.my_result AS r
                                             WHERE r.barrier_id = id AND r.slot = slot) THEN
                status := 'duplicate';
            ELSE
                status := 'already_complete';
            END IF;
        ELSIF locked.status = 'aborted' THEN
            status := 'aborted';
        ELSE
            status := 'expired';
        END IF;
        remaining := CASE WHEN status = 'already_complete' THEN 0 ELSE locked.remaining END;
        RETURN;
    END IF;
    IF locked.remaining < 0 THEN
        PERFORM barrier_internal.raise('XX000',
            fn || ': pending barrier with remaining ' || locked.remaining);
    END IF;

    reserve := CASE WHEN locked.need IS NOT NULL OR locked.deliver
                    THEN 4 * locked.expected::bigint ELSE 0 END;
    IF handup THEN
        -- The child's value, built here, under the parent's lock: its completion only if that
        -- fits beside the parent's results by an estimate made before it is built (its jsonb
        -- parts, at most 16 bytes per listed slot, 1024 for the rest), so that building it can
        -- never fail on size; else the reason why not. A value that does not fit beside the
        -- parent's results and their padding is not counted: the weight check below never
        -- fails a hand-up.
        IF child_results IS NOT NULL THEN
            estimate := barrier_internal.jsonb_bytes(child_results)
                + barrier_internal.jsonb_bytes(child_errors)
                + 16 * (COALESCE(cardinality(child_failed_slots), 0)
                        + COALESCE(cardinality(child_missing_slots), 0))
                + 1024;
            IF locked.result_bytes + estimate + 8 > 255 * 1024 * 1024 THEN
                child_reason := 'results too large to report into the parent';
                failed := true;
            ELSE
                result := jsonb_build_object('id', child, 'round', child_round,
                                             'status', child_status, 'results', child_results,
                                             'failed_slots', to_jsonb(child_failed_slots),
                                             'errors', child_errors,
                                             'missing_slots', to_jsonb(child_missing_slots));
            END IF;
        END IF;
        IF result IS NULL THEN
            result := jsonb_build_object('id', child, 'round', child_round,
                                         'status', child_status, 'reason', child_reason);
        END IF;
        size := barrier_internal.jsonb_bytes(result);
        IF locked.result_bytes + size + 8 + reserve > 255 * 1024 * 1024 THEN
            RETURN;
        END IF;
    END IF;

    -- The slot, or the next arrival position (unique: arrivals are numbered under the lock). An
    -- open barrier may have nothing remaining: an arrival then is one too many.
    position := COALESCE(slot, locked.expected - locked.remaining);
    IF slot IS NOT NULL OR locked.remaining > 0 THEN
        INSERT INTO barrier_internal.my_result AS r (barrier_id, slot, result, failed)
        VALUES (id, position, result, failed)
        ON CONFLICT ((r.barrier_id), (r.slot)) DO NOTHING;
        counted := FOUND;
    END IF;
    IF NOT counted THEN
        IF slot IS NULL AND locked.remaining > 0 THEN
            PERFORM barrier_internal.raise('XX000',
                fn || ': arrival position ' || position || ' was already taken');
        END IF;
        -- A retried task that succeeds where it had failed replaces the failure; anything else
        -- about a slot that reported changes nothing.
        IF slot IS NOT NULL AND NOT failed THEN
            UPDATE barrier_internal.my_result AS r SET result = result, failed = false
             WHERE r.barrier_id = id AND r.slot = slot AND r.failed;
            rearmed := FOUND;
        END IF;
        IF NOT rearmed THEN
            status := 'duplicate';
            remaining := locked.remaining;
            RETURN;
        END IF;
        counted := true;
    END IF;
    -- Refused (and the write above undone with the error) if the completion could no longer
    -- be built as one jsonb value, padding included. (A hand-up was checked above.)
    weight := locked.result_bytes + size + 8;
    IF weight + reserve > 255 * 1024 * 1024 THEN
        PERFORM barrier_internal.raise('54000', fn || ': argument "result" would take the results'
            || ' of barrier "' || barrier_internal.shown(id) || '" over ' || 255 * 1024 * 1024
            || ' bytes',
            'A completion hands out every result as one jsonb array, which has a size limit.',
            'Report smaller results, such as references to where the data is.');
    END IF;
    IF rearmed THEN
        remaining := locked.remaining;
        now_failed := locked.failed - 1;
    ELSE
        remaining := locked.remaining - 1;
        now_failed := locked.failed + CASE WHEN failed THEN 1 ELSE 0 END;
    END IF;

    -- What follows: a failure over the limit aborts; a sealed barrier aborts when its quorum is
    -- out of reach and completes when every task has reported or its quorum is met.
    successes := locked.expected - remaining - now_failed;
    IF failed THEN
        SELECT s.max_failures INTO max_failures
          FROM barrier_internal.my_barrier_spec AS s
         WHERE s.id = id;
        IF now_failed > max_failures THEN
            ending := 'aborted';
            reason := 'slot ' || position || ' failed: more than ' || max_failures || ' failures';
        END IF;
    END IF;
    IF ending IS NULL AND locked.sealed THEN
        IF locked.need IS NULL THEN
            IF remaining = 0 THEN
                ending := 'complete';
            END IF;
        ELSIF successes + remaining < locked.need THEN
            ending := 'aborted';
            reason := 'quorum of ' || locked.need || ' can no longer be reached';
        ELSIF successes >= locked.need THEN
            ending := 'complete';
        END IF;
    END IF;
    UPDATE barrier_internal.my_barrier AS b
       SET remaining = remaining, failed = now_failed, slotted = slot IS NOT NULL,
           result_bytes = weight, progress_at = statement_timestamp(),
           status = CASE WHEN ending = 'complete' THEN 'complete' ELSE b.status END,
           finished_at = CASE WHEN ending = 'complete' THEN statement_time END
     WHERE b.id = id;
    IF ending IS NULL THEN
        status := 'pending';
        RETURN;
    END IF;
    IF ending = 'aborted' THEN
        PERFORM barrier_internal.end_round(fn, id, locked.round, 'aborted', reason, level);
        status := 'aborted';
        RETURN;
    END IF;
    done := barrier_internal.complete(fn, id, locked.round, locked.owner, locked.expected,
                                      remaining, now_failed, level);
    status := done.status;
    results := done.results;
    callback := done.callback;
    failed_slots := done.failed_slots;
    errors := done.errors;
    missing_slots := done.missing_slots;
END
$$;

-- Hands a locked, finished, untaken barrier (complete, or expired with on_expiry => 'deliver':
-- `expired`) to its consumer, freeing its results. `other`: the barrier is another role's,
-- claimed through the caller's privileges (a superuser's barrier_completions). Whatever that
-- role wrote into its rows must not make the call fail: a completion that cannot be built (its
-- spec deleted, results beyond what one jsonb value holds) is left as it is, with a warning, and
-- finished_at comes back NULL. (Building it only reads, so the block takes no transaction id.)
CREATE FUNCTION barrier_internal.take(fn text, id text, other boolean, expected integer,
                                      remaining integer, failed integer, expired boolean,
                                      OUT finished_at timestamptz, OUT results jsonb,
                                      OUT callback jsonb, OUT status text,
                                      OUT failed_slots integer[], OUT errors jsonb,
                                      OUT missing_slots integer[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    done record;
BEGIN
    IF other THEN
        BEGIN
            done := barrier_internal.completion(take.id, expected, remaining, failed);
        EXCEPTION WHEN OTHERS THEN
            -- Only rows written by hand can make a completion that cannot be built: it is
            -- taken out of the queue (results freed), so that it cannot hold up every other.
            RAISE WARNING '%: barrier "%" of another role cannot be handed out and is dropped: %',
                          fn, barrier_internal.shown(take.id), SQLERRM;
            UPDATE barrier_internal.my_barrier AS b
               SET taken_at = statement_timestamp(), result_bytes = 0
             WHERE b.id = take.id;
            DELETE FROM barrier_internal.my_result AS r WHERE r.barrier_id = take.id;
            RETURN;
        END;
        IF done.channel IS NULL THEN
            RAISE WARNING '%: barrier "%" of another role cannot be handed out: its spec is missing',
                          fn, barrier_internal.shown(take.id);
            RETURN;
        END IF;
    ELSE
        done := barrier_internal.completion(take.id, expected, remaining, failed);
        IF done.channel IS NULL THEN
            PERFORM barrier_internal.raise('XX000', fn || ': barrier spec is missing');
        END IF;
    END IF;
    UPDATE barrier_internal.my_barrier AS b
       SET taken_at = statement_timestamp(), result_bytes = 0
     WHERE b.id = take.id
    RETURNING b.finished_at INTO take.finished_at;
    DELETE FROM barrier_internal.my_result AS r WHERE r.barrier_id = take.id;
    results := done.results;
    callback := done.callback;
    status := CASE WHEN expired THEN 'expired'
                   WHEN failed > 0 THEN 'complete_with_failures' ELSE 'complete' END;
    failed_slots := done.failed_slots;
    errors := done.errors;
    missing_slots := done.missing_slots;
END
$$;

-- Starts a locked barrier over: a new round with no recorded results, of the given shape.
-- Returns the new round.
CREATE FUNCTION barrier_internal.new_round(id text, expected integer, callback jsonb,
                                           channel text, ttl interval, stall_timeout interval,
                                           max_failures integer, need integer, sealed boolean,
                                           deliver boolean, parent text, parent_slot integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    -- Bound once: Citus refuses a non-IMMUTABLE function inside CASE in a write.
    statement_time constant timestamptz := statement_timestamp();
    the_round bigint;
BEGIN
    DELETE FROM barrier_internal.my_result AS r WHERE r.barrier_id = new_round.id;
    UPDATE barrier_internal.my_barrier AS b
       SET round = b.round + 1,
           status = CASE WHEN new_round.expected = 0 AND new_round.sealed THEN 'complete'
                         ELSE 'pending' END,
           expected = new_round.expected, remaining = new_round.expected, slotted = NULL,
           created_at = statement_timestamp(),
           expires_at = statement_timestamp() + new_round.ttl,
           finished_at = CASE WHEN new_round.expected = 0 AND new_round.sealed
                              THEN statement_time END,
           progress_at = statement_timestamp(), taken_at = NULL, result_bytes = 0,
           failed = 0, need = new_round.need, sealed = new_round.sealed,
           deliver = new_round.deliver
     WHERE b.id = new_round.id
    RETURNING b.round INTO the_round;
    PERFORM barrier_internal.write_spec(new_round.id, new_round.callback, new_round.channel,
                                        new_round.ttl, new_round.stall_timeout,
                                        new_round.max_failures, new_round.parent,
                                        new_round.parent_slot);
    RETURN the_round;
END
$$;

-- The spec of a barrier the caller holds, over whatever spec row its id had.
CREATE FUNCTION barrier_internal.write_spec(id text, callback jsonb, channel text, ttl interval,
                                            stall_timeout interval, max_failures integer,
                                            parent text, parent_slot integer) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
BEGIN
    INSERT INTO barrier_internal.my_barrier_spec AS s
           (id, callback, channel, ttl, stall_timeout, max_failures, parent, parent_slot)
    VALUES (id, callback, channel, ttl, stall_timeout, max_failures, parent, parent_slot)
    ON CONFLICT ((s.id)) DO UPDATE
       SET callback = excluded.callback, channel = excluded.channel, ttl = excluded.ttl,
           stall_timeout = excluded.stall_timeout, reason = NULL,
           max_failures = excluded.max_failures, parent = excluded.parent,
           parent_slot = excluded.parent_slot;
END
$$;

-- Checks, with the child's row locked, that barrier `child` (owned by `owner`) may report into
-- slot `slot` of `parent`, and takes the parent's row lock: the parent exists, the child is not
-- among its ancestors, it has the same owner, is pending and slotted (or not yet reported
-- into), the slot is in range, the tree stays within 16 levels, and the slot is free: no other
-- barrier claims it, and it has not reported, unless with a failure the child itself left there
-- (`claim_parent`, `claim_slot`: the parent slot the child named before; it may re-arm it).
CREATE FUNCTION barrier_internal.check_parent(fn text, child text, owner regrole, parent text,
                                              slot integer, claim_parent text,
                                              claim_slot integer) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    above text COLLATE "C" := parent;
    ancestors integer := 0;
    tried integer := 0;
    locked record;
    effective text;
BEGIN
    -- A parent's slot is claimed through a unique index, which Citus cannot keep across shards.
    -- citus: PERFORM barrier_internal.raise('0A000', fn || ': nested barriers are not supported where Citus distributes pg_barrier''s tables');
    LOOP
        SELECT b.owner, b.status, b.expected, b.slotted,
               b.status = 'pending' AND b.expires_at <= statement_timestamp() AS past_expiry
          INTO locked
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = parent
           FOR NO KEY UPDATE;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, parent, tried) THEN
            PERFORM barrier_internal.raise('42704',
                fn || ': barrier "' || barrier_internal.shown(parent) || '" does not exist');
        END IF;
    END LOOP;
    -- The parent and its ancestors, nearest first (the child's depth if it is not among them),
    -- read after the parent's lock: each statement's snapshot then shows a re-parenting that
    -- committed before it, so two enqueues cannot close a cycle between them unseen.
    WHILE above IS NOT NULL LOOP
        IF above = child THEN
            PERFORM barrier_internal.raise('42P19', fn || ': barrier "'
                || barrier_internal.shown(child) || '" cannot be its own ancestor');
        END IF;
        ancestors := ancestors + 1;
        EXIT WHEN ancestors > 16;
        SELECT s.parent INTO above FROM barrier_internal.my_barrier_spec AS s WHERE s.id = above;
    END LOOP;
    IF locked.owner <> owner THEN
        PERFORM barrier_internal.deny(fn, parent);
    END IF;
    effective := CASE WHEN locked.past_expiry THEN 'expired' ELSE locked.status END;
    IF effective <> 'pending' THEN
        PERFORM barrier_internal.raise('55000',
            fn || ': barrier "' || barrier_internal.shown(parent) || '" is ' || effective,
            'Only a pending barrier can take more tasks.');
    END IF;
    IF NOT locked.slotted THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "parent_slot": barrier "'
            || barrier_internal.shown(parent) || '" is counted without slots');
    END IF;
    IF slot >= locked.expected THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "parent_slot": ' || slot
            || ' is out of range: barrier "' || barrier_internal.shown(parent) || '" expects '
            || locked.expected || ' tasks, slots 0 to ' || (locked.expected - 1));
    END IF;
    IF ancestors > 16 THEN
        PERFORM barrier_internal.raise('54001', fn || ': barrier "' || barrier_internal.shown(child)
            || '" would be nested more than 16 levels deep');
    END IF;
    IF EXISTS (SELECT FROM barrier_internal.my_barrier_spec AS s
                WHERE s.parent = parent AND s.parent_slot = slot AND s.id <> child)
       OR EXISTS (SELECT FROM barrier_internal.my_result AS r
                   WHERE r.barrier_id = parent AND r.slot = slot
                     AND (NOT r.failed OR claim_parent IS DISTINCT FROM parent
                          OR claim_slot IS DISTINCT FROM slot)) THEN
        PERFORM barrier_internal.raise('42710', fn || ': slot ' || slot || ' of barrier "'
            || barrier_internal.shown(parent) || '" is taken',
            'It has reported, or another barrier reports into it.');
    END IF;
END
$$;

-- Registers barrier `id`, which completes after `expected` task reports, in the shape the
-- arguments from max_failures on give it (docs/shapes.md). See the README.
CREATE FUNCTION barrier_enqueue(
    id text,
    expected integer,
    callback jsonb DEFAULT NULL,
    ttl interval DEFAULT NULL,
    channel text DEFAULT NULL,
    replace boolean DEFAULT false,
    stall_timeout interval DEFAULT NULL,
    max_failures integer DEFAULT NULL,
    need integer DEFAULT NULL,
    sealed boolean DEFAULT true,
    on_expiry text DEFAULT 'discard',
    parent text DEFAULT NULL,
    parent_slot integer DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    -- Bound once: Citus refuses a non-IMMUTABLE function inside CASE in a write.
    statement_time constant timestamptz := statement_timestamp();
    id text COLLATE "C" := barrier_enqueue.id;
    channel text COLLATE "C" := barrier_enqueue.channel;
    parent text COLLATE "C" := barrier_enqueue.parent;
    fn constant text := 'barrier_enqueue';
    the_channel text;
    channel_source text;
    the_ttl interval;
    the_stall interval;
    seconds bigint;
    deliver boolean;
    at_once boolean;
    me regrole;
    locked record;
    same record;
    claim record;
    differences text[];
    the_round bigint;
BEGIN
    PERFORM barrier_internal.check_id(fn, id);
    IF channel IS NOT NULL THEN
        the_channel := channel;
        channel_source := 'channel';
    ELSE
        -- Unset, or RESET (a placeholder then reads as ''): the default.
        the_channel := COALESCE(NULLIF(current_setting('pg_barrier.channel', true), ''),
                                'pg_barrier');
        channel_source := 'pg_barrier.channel';
    END IF;
    IF octet_length(the_channel) > 63 THEN
        PERFORM barrier_internal.raise('22001', fn || ': argument "' || channel_source
            || '" is too long (' || octet_length(the_channel) || ' bytes, the limit is 63)');
    END IF;
    IF the_channel !~ '^[a-z_][a-z0-9_]*$' THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "' || channel_source
            || '": "' || the_channel || '" is not a valid channel name', NULL,
            'Use a lower-case identifier: a-z or _ first, then a-z, 0-9 or _.');
    END IF;
    IF expected IS NULL THEN
        PERFORM barrier_internal.raise('22004', fn || ': argument "expected" must not be NULL');
    ELSIF expected < 0 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "expected": must be >= 0, got ' || expected);
    END IF;
    PERFORM barrier_internal.check_size(fn, 'callback', callback);
    IF ttl IS NOT NULL THEN
        the_ttl := barrier_internal.check_interval(fn, 'ttl', ttl);
    ELSE
        seconds := barrier_internal.setting(fn, 'pg_barrier.default_ttl', 21600, 1, 2147483647,
                                            's', 'session');
        the_ttl := make_interval(secs => seconds);
    END IF;
    IF stall_timeout IS NOT NULL THEN
        the_stall := barrier_internal.check_interval(fn, 'stall_timeout', stall_timeout);
    ELSE
        seconds := barrier_internal.setting(fn, 'pg_barrier.stall_timeout', 0, 0, 2147483647,
                                            's', 'session');
        the_stall := CASE WHEN seconds > 0 THEN make_interval(secs => seconds) END;
    END IF;
    IF replace IS NULL THEN
        PERFORM barrier_internal.raise('22004', fn || ': argument "replace" must not be NULL');
    END IF;
    -- The shape (docs/shapes.md).
    IF max_failures < 0 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "max_failures": must be >= 0, got ' || max_failures);
    END IF;
    IF need < 1 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "need": must be >= 1, got ' || need);
    END IF;
    IF sealed IS NULL THEN
        PERFORM barrier_internal.raise('22004', fn || ': argument "sealed" must not be NULL');
    END IF;
    IF need > expected AND sealed THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "need": ' || need
            || ' is more than the ' || expected || ' tasks expected');
    END IF;
    IF on_expiry IS NULL THEN
        PERFORM barrier_internal.raise('22004', fn || ': argument "on_expiry" must not be NULL');
    ELSIF on_expiry NOT IN ('discard', 'deliver') THEN
        PERFORM barrier_internal.raise('22023', fn
            || ': invalid argument "on_expiry": must be ''discard'' or ''deliver''');
    END IF;
    IF (need IS NOT NULL OR on_expiry = 'deliver') AND expected > 10000000 THEN
        PERFORM barrier_internal.padded_slots(fn, 'expected');
    END IF;
    IF parent = '' THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "parent": must not be empty');
    ELSIF octet_length(parent) > 512 THEN
        PERFORM barrier_internal.raise('22001', fn || ': argument "parent" is too long ('
            || octet_length(parent) || ' bytes, the limit is 512)');
    END IF;
    IF parent_slot < 0 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "parent_slot": must be >= 0, got ' || parent_slot);
    END IF;
    IF (parent IS NULL) <> (parent_slot IS NULL) THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "parent_slot": parent and parent_slot go together');
    END IF;
    deliver := on_expiry = 'deliver';
    -- An empty, sealed fan-in is complete at once.
    at_once := expected = 0 AND sealed;
    PERFORM barrier_internal.check_writable(fn);
    -- citus: PERFORM barrier_internal.hold_barrier(fn, id);
    -- The new barrier's owner: the current user (by oid, whatever its name becomes).
    me := to_regrole(quote_ident(current_user));
    IF me IS NULL THEN
        PERFORM barrier_internal.deny(fn, id);
    END IF;

    -- The row may vanish between a failed insert and the lock (a sweep deleting a tombstone),
    -- so try again once; a row that stays out of sight is another role's.
    FOR attempt IN 1 .. 2 LOOP
        INSERT INTO barrier_internal.my_barrier AS b
               (id, round, owner, status, expected, remaining, created_at, expires_at,
                finished_at, progress_at, need, sealed, deliver)
        VALUES (id, 1, me,
                CASE WHEN at_once THEN 'complete' ELSE 'pending' END, expected, expected,
                statement_timestamp(), statement_timestamp() + the_ttl,
                CASE WHEN at_once THEN statement_time END, statement_timestamp(),
                need, sealed, deliver)
        ON CONFLICT ((b.id)) DO NOTHING;
        IF FOUND THEN
            -- Results left under this id by a role that held it before, written by hand and
            -- then its barrier deleted, are not this barrier's. (Its spec is overwritten.)
            DELETE FROM barrier_internal.my_result AS r WHERE r.barrier_id = id;
            IF parent IS NOT NULL THEN
                PERFORM barrier_internal.check_parent(fn, id, me, parent, parent_slot, NULL,
                                                      NULL);
            END IF;
            PERFORM barrier_internal.write_spec(id, callback, the_channel, the_ttl, the_stall,
                                                max_failures, parent, parent_slot);
            IF NOT at_once THEN
                RETURN 'pending';
            END IF;
            PERFORM barrier_internal.complete(fn, id, 1, me, 0, 0, 0, 0);
            RETURN 'complete';
        END IF;

        SELECT b.status, b.expected, b.owner,
               b.status = 'pending' AND b.expires_at <= statement_timestamp() AS past_expiry,
               b.round
          INTO locked
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id
           FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            PERFORM barrier_internal.hidden(fn, id, attempt);
            CONTINUE;
        END IF;

        IF locked.status = 'pending' AND NOT locked.past_expiry AND NOT replace THEN
            -- `sealed` is not compared: enqueueing a live barrier again never changes it.
            SELECT b.expected = expected AND s.callback IS NOT DISTINCT FROM callback
                       AND s.channel = the_channel AND s.ttl = the_ttl
                       AND s.stall_timeout IS NOT DISTINCT FROM the_stall
                       AND s.max_failures IS NOT DISTINCT FROM max_failures
                       AND b.need IS NOT DISTINCT FROM need AND b.deliver = deliver
                       AND s.parent IS NOT DISTINCT FROM parent
                       AND s.parent_slot IS NOT DISTINCT FROM parent_slot AS equal,
                   b.expected AS stored_expected,
                   s.callback IS NOT DISTINCT FROM callback AS same_callback,
                   s.channel AS stored_channel, s.ttl::text AS stored_ttl,
                   s.max_failures IS NOT DISTINCT FROM max_failures AS same_max_failures,
                   b.need IS NOT DISTINCT FROM need AS same_need,
                   b.deliver = deliver AS same_on_expiry,
                   s.parent IS NOT DISTINCT FROM parent
                       AND s.parent_slot IS NOT DISTINCT FROM parent_slot AS same_parent
              INTO same
              FROM barrier_internal.my_barrier AS b
              JOIN barrier_internal.my_barrier_spec AS s ON s.id = b.id
             WHERE b.id = id;
            IF NOT FOUND THEN
                PERFORM barrier_internal.raise('XX000', fn || ': barrier spec is missing');
            END IF;
            IF same.equal THEN
                RETURN 'pending';
            END IF;
            differences := '{}';
            IF same.stored_expected <> expected THEN
                differences := differences || ('expected is ' || same.stored_expected
                                               || ', not ' || expected);
            END IF;
            IF NOT same.same_callback THEN
                differences := differences || 'callback differs'::text;
            END IF;
            IF same.stored_channel <> the_channel THEN
                differences := differences || ('channel is "' || same.stored_channel
                                               || '", not "' || the_channel || '"');
            END IF;
            IF NOT same.same_max_failures THEN
                differences := differences || 'max_failures differs'::text;
            END IF;
            IF NOT same.same_need THEN
                differences := differences || 'need differs'::text;
            END IF;
            IF NOT same.same_on_expiry THEN
                differences := differences || 'on_expiry differs'::text;
            END IF;
            IF NOT same.same_parent THEN
                differences := differences || 'parent differs'::text;
            END IF;
            IF cardinality(differences) = 0 THEN
                differences := differences || ('ttl or stall_timeout differs (ttl is '
                                               || same.stored_ttl || ')');
            END IF;
            PERFORM barrier_internal.raise('42710',
                fn || ': a live barrier "' || barrier_internal.shown(id)
                   || '" exists with different arguments',
                array_to_string(differences, '; '),
                'Pass replace => true to discard its progress and start it over.');
        END IF;
        IF locked.status = 'pending' AND locked.past_expiry THEN
            PERFORM barrier_internal.end_round(fn, id, locked.round, 'expired', NULL, 0);
        END IF;
        IF parent IS NOT NULL THEN
            SELECT s.parent, s.parent_slot INTO claim
              FROM barrier_internal.my_barrier_spec AS s
             WHERE s.id = id;
            PERFORM barrier_internal.check_parent(fn, id, locked.owner, parent, parent_slot,
                                                  claim.parent, claim.parent_slot);
        END IF;
        the_round := barrier_internal.new_round(id, expected, callback, the_channel, the_ttl,
                                                the_stall, max_failures, need, sealed, deliver,
                                                parent, parent_slot);
        IF NOT at_once THEN
            RETURN 'pending';
        END IF;
        PERFORM barrier_internal.complete(fn, id, the_round, locked.owner, 0, 0, 0, 0);
        RETURN 'complete';
    END LOOP;
    PERFORM barrier_internal.raise('XX000', fn || ': barrier row vanished twice during enqueue');
END
$$;

-- One task reports completion, with its result and, for slotted barriers, its slot; `failed`:
-- the task failed, and `result` is its error (docs/shapes.md).
CREATE FUNCTION barrier_decr(
    id text,
    result jsonb DEFAULT NULL,
    slot integer DEFAULT NULL,
    failed boolean DEFAULT false
) RETURNS TABLE (status text, remaining integer, results jsonb, callback jsonb,
                 failed_slots integer[], errors jsonb, missing_slots integer[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    id text COLLATE "C" := barrier_decr.id;
    fn constant text := 'barrier_decr';
    size bigint := 0;
    done record;
BEGIN
    IF id IS NULL OR id = '' OR octet_length(id) > 512 THEN
        PERFORM barrier_internal.check_id(fn, id);
    END IF;
    IF slot < 0 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "slot": must be >= 0, got ' || slot);
    END IF;
    IF result IS NOT NULL THEN
        size := barrier_internal.jsonb_bytes(result);
        -- pg_barrier.max_result_bytes set nowhere (its placeholder does not exist): the default
        -- limit, as barrier_internal.setting would answer, without calling it.
        IF size > 1048576
           OR current_setting('pg_barrier.max_result_bytes', true) IS NOT NULL THEN
            IF size > barrier_internal.setting(fn, 'pg_barrier.max_result_bytes', 1048576, 1,
                                               2147483647, 'B', 'trusted') THEN
                PERFORM barrier_internal.check_size(fn, 'result', result);
            END IF;
        END IF;
    END IF;
    IF failed IS NULL THEN
        PERFORM barrier_internal.raise('22004', fn || ': argument "failed" must not be NULL');
    END IF;
    IF current_setting('transaction_read_only') = 'on' THEN
        PERFORM barrier_internal.check_writable(fn);
    END IF;
    -- citus: PERFORM barrier_internal.hold_barrier(fn, id);

    -- The common report: a success into a plain, sealed, pending barrier that is not past its
    -- deadline and leaves at least one task to go, for a slot that has not reported. One
    -- statement takes the row lock, records the result and counts it, as the Rust build's SQL
    -- path does (LOCK_AND_COUNT in src/state.rs, which says why int4larger); any other report,
    -- and this one if a condition fails (a row lock taken and an insert that did nothing change
    -- nothing), goes to barrier_internal.report. Not where Citus distributes the tables: it
    -- cannot route a statement that writes two of them to one shard, and would run it on every
    -- node (report's separate statements stay on the barrier's node).
    IF NOT failed
       -- citus: AND false
    THEN
        WITH locked AS (
            SELECT b.expected, b.remaining
              FROM barrier_internal.my_barrier AS b
             WHERE b.id = id AND b.status = 'pending' AND b.remaining > 1
               AND b.expires_at > statement_timestamp() AND b.need IS NULL AND b.sealed
               AND NOT b.deliver AND (b.slotted IS NULL OR b.slotted = (slot IS NOT NULL))
               AND (slot IS NULL OR slot < b.expected)
               AND b.result_bytes + size + 8 <= 255 * 1024 * 1024
               FOR NO KEY UPDATE),
        recorded AS (
            INSERT INTO barrier_internal.my_result AS r (barrier_id, slot, result, failed)
            SELECT id, COALESCE(slot, l.expected - l.remaining), result, false
              FROM locked AS l
            ON CONFLICT ((r.barrier_id), (r.slot)) DO NOTHING
            RETURNING 1)
        UPDATE barrier_internal.my_barrier AS b
           SET remaining = int4larger(b.remaining - 1, 0), slotted = slot IS NOT NULL,
               result_bytes = b.result_bytes + size + 8, progress_at = statement_timestamp()
         WHERE b.id = id AND EXISTS (SELECT FROM recorded)
        RETURNING b.remaining INTO remaining;
        IF FOUND THEN
            status := 'pending';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    done := barrier_internal.report(fn, id, slot, result, failed, size, 0, NULL);
    status := done.status;
    remaining := done.remaining;
    results := done.results;
    callback := done.callback;
    failed_slots := done.failed_slots;
    errors := done.errors;
    missing_slots := done.missing_slots;
    RETURN NEXT;
END
$$;

-- Seals an open barrier: from now on it completes when its reports are in, or its quorum is
-- met; if that is already so, it completes here and this call answers as the completing
-- barrier_decr would. Sealing a sealed, pending barrier changes nothing.
CREATE FUNCTION barrier_seal(id text)
RETURNS TABLE (status text, remaining integer, results jsonb, callback jsonb,
               failed_slots integer[], errors jsonb, missing_slots integer[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    -- Bound once: Citus refuses a non-IMMUTABLE function inside CASE in a write.
    statement_time constant timestamptz := statement_timestamp();
    id text COLLATE "C" := barrier_seal.id;
    fn constant text := 'barrier_seal';
    tried integer := 0;
    locked record;
    effective text;
    successes integer;
    ending text;
    done record;
BEGIN
    PERFORM barrier_internal.check_id(fn, id);
    PERFORM barrier_internal.check_writable(fn);
    -- citus: PERFORM barrier_internal.hold_barrier(fn, id);
    LOOP
        SELECT b.status, b.expected, b.remaining, b.failed, b.need, b.sealed, b.round, b.owner,
               b.status = 'pending' AND b.expires_at <= statement_timestamp() AS past_expiry
          INTO locked
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id
           FOR NO KEY UPDATE;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, id, tried) THEN
            PERFORM barrier_internal.raise('42704',
                fn || ': barrier "' || barrier_internal.shown(id) || '" does not exist');
        END IF;
    END LOOP;
    effective := CASE WHEN locked.past_expiry THEN 'expired'
                      WHEN locked.status = 'complete' AND locked.failed > 0
                      THEN 'complete_with_failures'
                      ELSE locked.status END;
    IF effective <> 'pending' THEN
        PERFORM barrier_internal.raise('55000',
            fn || ': barrier "' || barrier_internal.shown(id) || '" is ' || effective,
            'Only a pending barrier can be sealed.');
    END IF;
    successes := locked.expected - locked.remaining - locked.failed;
    IF locked.need IS NULL THEN
        IF locked.remaining = 0 THEN
            ending := 'complete';
        END IF;
    ELSIF successes + locked.remaining < locked.need THEN
        ending := 'aborted';
    ELSIF successes >= locked.need THEN
        ending := 'complete';
    END IF;
    IF NOT locked.sealed OR ending = 'complete' THEN
        UPDATE barrier_internal.my_barrier AS b
           SET sealed = true,
               status = CASE WHEN ending = 'complete' THEN 'complete' ELSE b.status END,
               finished_at = CASE WHEN ending = 'complete' THEN statement_time END
         WHERE b.id = id;
    END IF;
    remaining := locked.remaining;
    IF ending IS NULL THEN
        status := 'pending';
    ELSIF ending = 'aborted' THEN
        PERFORM barrier_internal.end_round(fn, id, locked.round, 'aborted',
            'quorum of ' || locked.need || ' can no longer be reached', 0);
        status := 'aborted';
    ELSE
        done := barrier_internal.complete(fn, id, locked.round, locked.owner, locked.expected,
                                          locked.remaining, locked.failed, 0);
        status := done.status;
        results := done.results;
        callback := done.callback;
        failed_slots := done.failed_slots;
        errors := done.errors;
        missing_slots := done.missing_slots;
    END IF;
    RETURN NEXT;
END
$$;

-- Aborts a live barrier: frees its results, keeps a tombstone until its expiry, notifies.
CREATE FUNCTION barrier_abort(id text, reason text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    id text COLLATE "C" := barrier_abort.id;
    fn constant text := 'barrier_abort';
    tried integer := 0;
    locked record;
BEGIN
    PERFORM barrier_internal.check_id(fn, id);
    IF octet_length(reason) > 1024 THEN
        PERFORM barrier_internal.raise('22001', fn || ': argument "reason" is too long ('
            || octet_length(reason) || ' bytes, the limit is 1024)');
    END IF;
    PERFORM barrier_internal.check_writable(fn);
    -- citus: PERFORM barrier_internal.hold_barrier(fn, id);
    LOOP
        SELECT b.status, b.round,
               b.status = 'pending' AND b.expires_at <= statement_timestamp() AS past_expiry
          INTO locked
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id
           FOR NO KEY UPDATE;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, id, tried) THEN
            RETURN 'unknown';
        END IF;
    END LOOP;
    IF locked.status = 'complete' THEN
        RETURN 'already_complete';
    ELSIF locked.status = 'aborted' THEN
        RETURN 'already_aborted';
    ELSIF locked.status = 'expired' OR locked.past_expiry THEN
        IF locked.status = 'pending' THEN
            PERFORM barrier_internal.end_round(fn, id, locked.round, 'expired', NULL, 0);
        END IF;
        RETURN 'expired';
    END IF;
    PERFORM barrier_internal.end_round(fn, id, locked.round, 'aborted', reason, 0);
    RETURN 'aborted';
END
$$;

-- The barrier as stored: one row, or none. This, not NOTIFY, is the truth about a barrier.
-- (Its argument and first column share the name `id`, which PL/pgSQL cannot compile: the body
-- is barrier_internal.status.)
CREATE FUNCTION barrier_internal.status(the_id text)
RETURNS TABLE (o_id text, o_status text, o_expected integer, o_remaining integer,
               o_created_at timestamptz, o_expires_at timestamptz, o_finished_at timestamptz,
               o_channel text, o_callback jsonb, o_reason text, o_round bigint,
               o_failed integer, o_sealed boolean, o_need integer)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
#variable_conflict use_variable
DECLARE
    the_id text COLLATE "C" := status.the_id;
    fn constant text := 'barrier_status';
    tried integer := 0;
    found_row record;
BEGIN
    PERFORM barrier_internal.check_id(fn, the_id);
    -- citus: PERFORM barrier_internal.check_citus_role(fn);
    LOOP
        SELECT b.id, b.status, b.expires_at <= statement_timestamp() AS past,
               b.expected, b.remaining, b.created_at, b.expires_at, b.finished_at,
               s.id IS NOT NULL AS has_spec, s.channel, s.callback, s.reason, b.round,
               b.failed, b.sealed, b.need
          INTO found_row
          FROM barrier_internal.my_barrier AS b
          LEFT JOIN barrier_internal.my_barrier_spec AS s ON s.id = b.id
         WHERE b.id = the_id;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, the_id, tried) THEN
            RETURN;
        END IF;
    END LOOP;
    IF NOT found_row.has_spec THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT found_row.id,
        CASE WHEN found_row.status = 'pending' AND found_row.past THEN 'expired'
             WHEN found_row.status = 'complete' AND found_row.failed > 0
             THEN 'complete_with_failures'
             ELSE found_row.status END,
        found_row.expected, found_row.remaining, found_row.created_at, found_row.expires_at,
        found_row.finished_at, found_row.channel, found_row.callback, found_row.reason,
        found_row.round, found_row.failed, found_row.sealed, found_row.need;
END
$$;

CREATE FUNCTION barrier_status(id text)
RETURNS TABLE (id text, status text, expected integer, remaining integer,
               created_at timestamptz, expires_at timestamptz, finished_at timestamptz,
               channel text, callback jsonb, reason text, round bigint,
               failed integer, sealed boolean, need integer)
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
AS $$
    SELECT * FROM barrier_internal.status($1)
$$;

-- Up to max_rows slots of a pending barrier above `after` that have not reported, in order (for
-- a barrier counted without slots, the arrival positions still to come); none for a finished
-- barrier.
CREATE FUNCTION barrier_pending_slots(id text, max_rows integer DEFAULT 1000,
                                      after integer DEFAULT NULL)
RETURNS TABLE (slot integer)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    id text COLLATE "C" := barrier_pending_slots.id;
    fn constant text := 'barrier_pending_slots';
    tried integer := 0;
    found_row record;
BEGIN
    PERFORM barrier_internal.check_id(fn, id);
    PERFORM barrier_internal.check_positive(fn, 'max_rows', max_rows);
    IF after < 0 THEN
        PERFORM barrier_internal.raise('22023',
            fn || ': invalid argument "after": must be >= 0, got ' || after);
    END IF;
    -- citus: PERFORM barrier_internal.check_citus_role(fn);
    LOOP
        SELECT b.expected, b.status = 'pending' AND b.expires_at > statement_timestamp() AS live
          INTO found_row
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, id, tried) THEN
            PERFORM barrier_internal.raise('42704',
                fn || ': barrier "' || barrier_internal.shown(id) || '" does not exist');
        END IF;
    END LOOP;
    -- (after + 1 only below expected - 1: after may be the largest integer.)
    IF found_row.live AND (after IS NULL AND found_row.expected > 0
                           OR after < found_row.expected - 1) THEN
        -- generate_series in the select list yields one slot at a time (in FROM it would make
        -- them all first), and each is looked up by a scalar subquery, which the planner cannot
        -- turn into a join that reads them all (as it may turn NOT EXISTS): the LIMIT stops it
        -- after max_rows pending slots.
        RETURN QUERY
        SELECT g.slot
          FROM (SELECT generate_series(COALESCE(after + 1, 0), found_row.expected - 1) AS slot) AS g
         WHERE (SELECT true FROM barrier_internal.my_result AS r
                 WHERE r.barrier_id = id AND r.slot = g.slot) IS NULL
         LIMIT max_rows;
    END IF;
END
$$;

-- The results recorded so far, in slot (or arrival) order (a failed report's as null); for a
-- finished barrier not yet taken, its completion's results. NULL for an unknown barrier and for
-- an aborted, discarded-expired or taken one, whose results were freed.
CREATE FUNCTION barrier_results(id text) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    id text COLLATE "C" := barrier_results.id;
    fn constant text := 'barrier_results';
    tried integer := 0;
    found_row record;
BEGIN
    PERFORM barrier_internal.check_id(fn, id);
    -- citus: PERFORM barrier_internal.check_citus_role(fn);
    LOOP
        SELECT CASE WHEN (b.taken_at IS NULL
                          AND (b.status = 'complete' OR (b.status = 'expired' AND b.deliver))
                          AND b.remaining = 0 AND b.failed = 0)
                      OR (b.status = 'pending' AND b.expires_at > statement_timestamp())
               THEN COALESCE((SELECT jsonb_agg(CASE WHEN r.failed THEN NULL ELSE r.result END
                                               ORDER BY r.slot)
                                FROM barrier_internal.my_result AS r
                               WHERE r.barrier_id = b.id), '[]'::jsonb) END AS results,
               b.taken_at IS NULL
                   AND (b.status = 'complete' OR (b.status = 'expired' AND b.deliver))
                   AND (b.remaining <> 0 OR b.failed <> 0) AS shaped,
               b.expected, b.remaining, b.failed
          INTO found_row
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, id, tried) THEN
            RETURN NULL;
        END IF;
    END LOOP;
    IF found_row.shaped THEN
        RETURN (barrier_internal.completion(id, found_row.expected, found_row.remaining,
                                            found_row.failed)).results;
    END IF;
    RETURN found_row.results;
END
$$;

-- Whether every part of `value` lies between 0 and 100 years (months, days and time apart),
-- without arithmetic that could fail: only such an interval is added to a timestamp of another
-- role's barrier (see barrier_internal.sweep). The API stores no other.
CREATE FUNCTION barrier_internal.within_a_century(value interval) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (pg_catalog.extract('year', value) OPERATOR(pg_catalog.*) 12
                OPERATOR(pg_catalog.+) pg_catalog.extract('month', value))
               OPERATOR(pg_catalog.<@) pg_catalog.numrange(0, 1200, '[]')
       AND pg_catalog.extract('day', value) OPERATOR(pg_catalog.<@) pg_catalog.numrange(0, 36500, '[]')
       AND (pg_catalog.extract('hour', value) OPERATOR(pg_catalog.*) 3600
                OPERATOR(pg_catalog.+) pg_catalog.extract('minute', value) OPERATOR(pg_catalog.*) 60
                OPERATOR(pg_catalog.+) pg_catalog.extract('second', value))
               OPERATOR(pg_catalog.<@) pg_catalog.numrange(0, 3155760000, '[]')
$$;

-- Ends round `round` of a locked, live barrier as expired, in the tables themselves: the sweep's
-- part of barrier_internal.end_round, run with the privileges of the tables' owner. With
-- on_expiry => 'deliver' the results stay, to be taken. A barrier with a parent ends through
-- barrier_internal.end_round, whose report into the parent is the API's own, through the
-- views: where they do not show the barrier (a caller that has the privileges of the tables'
-- owner but not of the barrier's owner, such as a tables' owner that is not a superuser), it
-- expires here and its parent is not told, with a warning.
CREATE FUNCTION barrier_internal.expire(id text, round bigint, reason text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    the_channel text;
    the_parent text;
    keep boolean;
BEGIN
    -- A report handed up by a barrier expired before it in this sweep may have ended it.
    IF NOT EXISTS (SELECT FROM barrier_internal.barrier AS b
                    WHERE b.id = expire.id AND b.status = 'pending') THEN
        RETURN;
    END IF;
    SELECT s.parent INTO the_parent FROM barrier_internal.barrier_spec AS s
     WHERE s.id = expire.id;
    IF the_parent IS NOT NULL THEN
        IF EXISTS (SELECT FROM barrier_internal.my_barrier AS b WHERE b.id = expire.id) THEN
            PERFORM barrier_internal.end_round('barrier_sweep', expire.id, expire.round,
                                               'expired', expire.reason, 0);
            RETURN;
        END IF;
        RAISE WARNING 'barrier_sweep: barrier "%" expired, but its parent "%" is not told: the sweep runs as a role without the privileges of the barrier''s owner',
                      barrier_internal.shown(expire.id), barrier_internal.shown(the_parent);
    END IF;
    UPDATE barrier_internal.barrier AS b
       SET status = 'expired', finished_at = statement_timestamp(),
           result_bytes = CASE WHEN b.deliver THEN b.result_bytes ELSE 0 END
     WHERE b.id = expire.id
    RETURNING b.deliver INTO keep;
    UPDATE barrier_internal.barrier_spec AS s SET reason = expire.reason
     WHERE s.id = expire.id
    RETURNING s.channel INTO the_channel;
    IF keep IS NOT TRUE THEN
        DELETE FROM barrier_internal.result AS r WHERE r.barrier_id = expire.id;
    END IF;
    PERFORM barrier_internal.notify(the_channel, expire.id, 'expired', expire.round);
END
$$;

-- barrier_sweep's work over every role's barriers, in the tables themselves: for callers with
-- the privileges of the tables' owner (barrier_sweep as a superuser or the owner, and
-- barrier_internal.sweep_as_owner). Anything a role may have written into its rows is expected:
-- a barrier without a spec, a spec whose channel or stall_timeout the API would refuse, any
-- timestamp; none of it makes the sweep fail.
CREATE FUNCTION barrier_internal.sweep(max_rows integer, retention interval)
RETURNS TABLE (expired bigint, deleted bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
#variable_conflict use_variable
DECLARE
    fn constant text := 'barrier_sweep';
    due_ids text[];
    due_rounds bigint[];
    stalled_ids text[];
    stalled_rounds bigint[];
    doomed text[];
    gone bigint;
    candidate record;
    locked_round bigint;
    sharded constant boolean := barrier_internal.distributed();
BEGIN
    PERFORM barrier_internal.check_positive(fn, 'max_rows', max_rows);
    PERFORM barrier_internal.check_writable(fn);
    IF sharded THEN
        -- Citus plans no lock over many shards: the candidates are listed, then each is locked on
        -- its own, skipped if another transaction holds it or if it no longer qualifies.
        due_ids := '{}';
        due_rounds := '{}';
        FOR candidate IN
            SELECT b.id FROM barrier_internal.barrier AS b
             WHERE b.status = 'pending' AND b.expires_at <= statement_timestamp()
             ORDER BY b.expires_at
             LIMIT max_rows
        LOOP
            PERFORM barrier_internal.hold_barrier(fn, candidate.id);
            SELECT b.round INTO locked_round
              FROM barrier_internal.barrier AS b
             WHERE b.id = candidate.id
               AND b.status = 'pending' AND b.expires_at <= statement_timestamp()
               FOR NO KEY UPDATE OF b SKIP LOCKED;
            CONTINUE WHEN NOT FOUND;
            due_ids := due_ids || candidate.id;
            due_rounds := due_rounds || locked_round;
        END LOOP;
        stalled_ids := '{}';
        stalled_rounds := '{}';
        IF cardinality(due_ids) < max_rows THEN
            -- progress_at + stall_timeout only where it cannot leave the timestamp range: a
            -- progress_at in the future has not stalled, and the API's stall_timeout is at most a
            -- century.
            FOR candidate IN
                SELECT b.id
                  FROM barrier_internal.barrier_spec AS s
                  JOIN barrier_internal.barrier AS b ON b.id = s.id
                 WHERE s.stall_timeout IS NOT NULL AND b.status = 'pending'
                   AND b.expires_at > statement_timestamp()
                   AND CASE WHEN b.progress_at <= statement_timestamp()
                                 AND barrier_internal.within_a_century(s.stall_timeout)
                            THEN b.progress_at + s.stall_timeout <= statement_timestamp()
                            ELSE false END
                 LIMIT max_rows - cardinality(due_ids)
            LOOP
                PERFORM barrier_internal.hold_barrier(fn, candidate.id);
                SELECT b.round INTO locked_round
                  FROM barrier_internal.barrier_spec AS s
                  JOIN barrier_internal.barrier AS b ON b.id = s.id
                 WHERE b.id = candidate.id AND s.id = candidate.id
                   AND s.stall_timeout IS NOT NULL AND b.status = 'pending'
                   AND b.expires_at > statement_timestamp()
                   AND CASE WHEN b.progress_at <= statement_timestamp()
                                 AND barrier_internal.within_a_century(s.stall_timeout)
                            THEN b.progress_at + s.stall_timeout <= statement_timestamp()
                            ELSE false END
                   FOR NO KEY UPDATE OF b SKIP LOCKED;
                CONTINUE WHEN NOT FOUND;
                stalled_ids := stalled_ids || candidate.id;
                stalled_rounds := stalled_rounds || locked_round;
            END LOOP;
        END IF;
    ELSE
        -- Rows another transaction holds are skipped: sweeps never wait or deadlock, and two never
        -- pick the same barrier.
        SELECT COALESCE(array_agg(d.id), '{}'), COALESCE(array_agg(d.round), '{}')
          INTO due_ids, due_rounds
          FROM (SELECT b.id, b.round
                  FROM barrier_internal.barrier AS b
                 WHERE b.status = 'pending' AND b.expires_at <= statement_timestamp()
                 ORDER BY b.expires_at
                 LIMIT max_rows
                   FOR NO KEY UPDATE OF b SKIP LOCKED) AS d;
        IF cardinality(due_ids) < max_rows THEN
            -- progress_at + stall_timeout only where it cannot leave the timestamp range: a
            -- progress_at in the future has not stalled, and the API's stall_timeout is at most a
            -- century.
            SELECT COALESCE(array_agg(d.id), '{}'), COALESCE(array_agg(d.round), '{}')
              INTO stalled_ids, stalled_rounds
              FROM (SELECT b.id, b.round
                      FROM barrier_internal.barrier_spec AS s
                      JOIN barrier_internal.barrier AS b ON b.id = s.id
                     WHERE s.stall_timeout IS NOT NULL AND b.status = 'pending'
                       AND b.expires_at > statement_timestamp()
                       AND CASE WHEN b.progress_at <= statement_timestamp()
                                     AND barrier_internal.within_a_century(s.stall_timeout)
                                THEN b.progress_at + s.stall_timeout <= statement_timestamp()
                                ELSE false END
                     LIMIT max_rows - cardinality(due_ids)
                       FOR NO KEY UPDATE OF b SKIP LOCKED) AS d;
        ELSE
            stalled_ids := '{}';
            stalled_rounds := '{}';
        END IF;
    END IF;
    FOR i IN 1 .. cardinality(due_ids) LOOP
        PERFORM barrier_internal.expire(due_ids[i], due_rounds[i], NULL);
    END LOOP;
    FOR i IN 1 .. cardinality(stalled_ids) LOOP
        PERFORM barrier_internal.expire(stalled_ids[i], stalled_rounds[i],
                                        'no report within stall_timeout');
    END LOOP;

    -- Finished barriers past the retention (aborted ones not before their expiry, so that late
    -- reports still learn they were aborted), deleted by id.
    IF sharded THEN
        doomed := '{}';
        FOR candidate IN
            SELECT b.id FROM barrier_internal.barrier AS b
             WHERE b.status <> 'pending'
               AND b.finished_at <= statement_timestamp() - retention
               AND (b.status <> 'aborted' OR b.expires_at <= statement_timestamp())
             LIMIT max_rows
        LOOP
            PERFORM barrier_internal.hold_barrier(fn, candidate.id);
            PERFORM FROM barrier_internal.barrier AS b
              WHERE b.id = candidate.id AND b.status <> 'pending'
                AND b.finished_at <= statement_timestamp() - retention
                AND (b.status <> 'aborted' OR b.expires_at <= statement_timestamp())
                FOR UPDATE OF b SKIP LOCKED;
            CONTINUE WHEN NOT FOUND;
            doomed := doomed || candidate.id;
        END LOOP;
    ELSE
        SELECT COALESCE(array_agg(d.id), '{}') INTO doomed
          FROM (SELECT b.id FROM barrier_internal.barrier AS b
                 WHERE b.status <> 'pending'
                   AND b.finished_at <= statement_timestamp() - retention
                   AND (b.status <> 'aborted' OR b.expires_at <= statement_timestamp())
                 LIMIT max_rows
                   FOR UPDATE OF b SKIP LOCKED) AS d;
    END IF;
    gone := 0;
    IF cardinality(doomed) > 0 THEN
        DELETE FROM barrier_internal.result AS r WHERE r.barrier_id = ANY (doomed);
        DELETE FROM barrier_internal.barrier_spec AS s WHERE s.id = ANY (doomed);
        DELETE FROM barrier_internal.barrier AS b WHERE b.id = ANY (doomed);
        GET DIAGNOSTICS gone = ROW_COUNT;
    END IF;
    RETURN QUERY SELECT (cardinality(due_ids) + cardinality(stalled_ids))::bigint, gone;
END
$$;

-- barrier_sweep for a caller without the privileges of the tables' owner: the sweep of every
-- role's barriers that anyone may run in the Rust build, as the tables' owner. It does only what
-- is due, with the retention stored by ALTER DATABASE / ALTER ROLE or the default, never a value
-- set in the session: code that runs as another role (an index expression a superuser's ANALYZE
-- evaluates) cannot shorten it.
CREATE FUNCTION barrier_internal.sweep_as_owner(max_rows integer)
RETURNS TABLE (expired bigint, deleted bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT * FROM barrier_internal.sweep(max_rows, make_interval(secs =>
        barrier_internal.setting('barrier_sweep', 'pg_barrier.retention', 86400, 0, 2147483647,
                                 's', 'stored')));
END
$$;

-- Expires pending barriers past their ttl or their no-progress window (notifying `expired`),
-- then deletes finished barriers older than pg_barrier.retention; at most `max_rows` of each,
-- over every role's barriers. The session's retention counts only for a caller with the
-- privileges of the tables' owner (a superuser, or the owner). Without the Rust build's
-- background worker, schedule it (pg_cron: see the README).
CREATE FUNCTION barrier_sweep(max_rows integer DEFAULT 10000)
RETURNS TABLE (expired bigint, deleted bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    fn constant text := 'barrier_sweep';
BEGIN
    PERFORM barrier_internal.check_positive(fn, 'max_rows', max_rows);
    PERFORM barrier_internal.check_writable(fn);
    IF barrier_internal.has_owner_privileges() THEN
        RETURN QUERY SELECT * FROM barrier_internal.sweep(max_rows, make_interval(secs =>
            barrier_internal.setting(fn, 'pg_barrier.retention', 86400, 0, 2147483647, 's',
                                     'session')));
    ELSE
        RETURN QUERY SELECT * FROM barrier_internal.sweep_as_owner(max_rows);
    END IF;
END
$$;

-- The completion of a finished barrier (complete, or expired with on_expiry => 'deliver'),
-- handed out once across all sessions. A pending barrier past its expiry expires first.
CREATE FUNCTION barrier_take(id text)
RETURNS TABLE (results jsonb, callback jsonb, status text, failed_slots integer[],
               errors jsonb, missing_slots integer[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    id text COLLATE "C" := barrier_take.id;
    fn constant text := 'barrier_take';
    tried integer := 0;
    locked record;
    taken record;
BEGIN
    PERFORM barrier_internal.check_id(fn, id);
    PERFORM barrier_internal.check_writable(fn);
    -- citus: PERFORM barrier_internal.hold_barrier(fn, id);
    LOOP
        SELECT b.status, b.taken_at IS NOT NULL AS taken, b.deliver, b.expected, b.remaining,
               b.failed, b.round,
               b.status = 'pending' AND b.expires_at <= statement_timestamp() AS past_expiry
          INTO locked
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id
           FOR NO KEY UPDATE;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, id, tried) THEN
            RETURN;
        END IF;
    END LOOP;
    IF locked.past_expiry THEN
        PERFORM barrier_internal.end_round(fn, id, locked.round, 'expired', NULL, 0);
        -- A delivered expiry can be taken, unless its parent took it.
        IF NOT locked.deliver OR EXISTS (SELECT FROM barrier_internal.my_barrier AS b
                                          WHERE b.id = id AND b.taken_at IS NOT NULL) THEN
            RETURN;
        END IF;
    ELSIF locked.taken
          OR NOT (locked.status = 'complete' OR (locked.status = 'expired' AND locked.deliver))
    THEN
        RETURN;
    END IF;
    taken := barrier_internal.take(fn, id, false, locked.expected, locked.remaining,
                                   locked.failed, locked.status <> 'complete');
    RETURN QUERY SELECT taken.results, taken.callback, taken.status, taken.failed_slots,
                        taken.errors, taken.missing_slots;
END
$$;

-- Claims up to `max_rows` finished, untaken barriers (complete, or expired with on_expiry =>
-- 'deliver'; on `channel`, or any) the caller may act for, oldest first, and hands each out as
-- barrier_take would.
CREATE FUNCTION barrier_completions(channel text DEFAULT NULL, max_rows integer DEFAULT 100)
RETURNS TABLE (id text, finished_at timestamptz, results jsonb, callback jsonb, status text,
               failed_slots integer[], errors jsonb, missing_slots integer[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    channel text COLLATE "C" := barrier_completions.channel;
    fn constant text := 'barrier_completions';
    me oid;
    handed_out integer := 0;
    candidate record;
    locked record;
    taken record;
BEGIN
    PERFORM barrier_internal.check_positive(fn, 'max_rows', max_rows);
    PERFORM barrier_internal.check_writable(fn);
    me := to_regrole(quote_ident(current_user))::oid;
    -- Oldest first (the partial index barrier_untaken), each locked and handed out on its own:
    -- the views are security barriers, which PostgreSQL plans as subqueries, so a lock taken in
    -- one query with ORDER BY and LIMIT would lock every candidate before the LIMIT applied. A
    -- barrier another consumer holds is skipped (SKIP LOCKED); one taken since the candidates
    -- were read, or without a spec, or on another channel, is not claimed (checked under the
    -- lock, in a statement of its own at READ COMMITTED).
    FOR candidate IN
        SELECT b.id, b.owner::oid IS DISTINCT FROM me AS other
          FROM barrier_internal.my_barrier AS b
         WHERE b.taken_at IS NULL AND (b.status = 'complete' OR (b.status = 'expired' AND b.deliver))
         ORDER BY b.finished_at, b.id
    LOOP
        -- citus: PERFORM barrier_internal.hold_barrier(fn, candidate.id);
        SELECT b.expected, b.remaining, b.failed, b.status <> 'complete' AS expired
          INTO locked
          FROM barrier_internal.my_barrier AS b
          WHERE b.id = candidate.id AND b.taken_at IS NULL
            AND (b.status = 'complete' OR (b.status = 'expired' AND b.deliver))
            AND EXISTS (SELECT FROM barrier_internal.my_barrier_spec AS s
                         WHERE s.id = b.id AND (channel IS NULL OR s.channel = channel))
            FOR NO KEY UPDATE OF b SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        taken := barrier_internal.take(fn, candidate.id, candidate.other, locked.expected,
                                       locked.remaining, locked.failed, locked.expired);
        CONTINUE WHEN taken.finished_at IS NULL;
        RETURN QUERY SELECT candidate.id, taken.finished_at, taken.results, taken.callback,
                            taken.status, taken.failed_slots, taken.errors, taken.missing_slots;
        handed_out := handed_out + 1;
        EXIT WHEN handed_out >= max_rows;
    END LOOP;
END
$$;

-- Adds `extra` tasks to a pending barrier and returns the new `expected`.
CREATE FUNCTION barrier_add(id text, extra integer) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    id text COLLATE "C" := barrier_add.id;
    fn constant text := 'barrier_add';
    tried integer := 0;
    locked record;
    effective text;
BEGIN
    PERFORM barrier_internal.check_id(fn, id);
    PERFORM barrier_internal.check_positive(fn, 'extra', extra);
    PERFORM barrier_internal.check_writable(fn);
    -- citus: PERFORM barrier_internal.hold_barrier(fn, id);
    LOOP
        SELECT b.status, b.expected, b.need, b.deliver,
               b.status = 'pending' AND b.expires_at <= statement_timestamp() AS past_expiry
          INTO locked
          FROM barrier_internal.my_barrier AS b
         WHERE b.id = id
           FOR NO KEY UPDATE;
        EXIT WHEN FOUND;
        tried := tried + 1;
        IF NOT barrier_internal.hidden(fn, id, tried) THEN
            PERFORM barrier_internal.raise('42704',
                fn || ': barrier "' || barrier_internal.shown(id) || '" does not exist');
        END IF;
    END LOOP;
    effective := CASE WHEN locked.past_expiry THEN 'expired' ELSE locked.status END;
    IF effective <> 'pending' THEN
        PERFORM barrier_internal.raise('55000',
            fn || ': barrier "' || barrier_internal.shown(id) || '" is ' || effective,
            'Only a pending barrier can take more tasks.');
    END IF;
    IF locked.expected::bigint + extra > 2147483647 THEN
        PERFORM barrier_internal.raise('22023', fn || ': invalid argument "extra": ' || extra
            || ' more tasks would exceed 2147483647 in all');
    END IF;
    IF (locked.need IS NOT NULL OR locked.deliver) AND locked.expected + extra > 10000000 THEN
        PERFORM barrier_internal.padded_slots(fn, 'extra');
    END IF;
    UPDATE barrier_internal.my_barrier AS b
       SET expected = b.expected + extra, remaining = b.remaining + extra,
           progress_at = statement_timestamp()
     WHERE b.id = id;
    RETURN locked.expected + extra;
END
$$;

-- Counts over the barriers the calling role may act for, for dashboards and alerts. (A role's
-- hand-written rows may hold any timestamp and byte count: an infinite created_at has no age,
-- and the bytes stop at the largest bigint.) `untaken` counts the rounds waiting for a
-- consumer: complete ones, and expired ones that deliver.
CREATE FUNCTION barrier_stats()
RETURNS TABLE (pending bigint, complete bigint, aborted bigint, expired bigint, untaken bigint,
               oldest_pending_age interval, result_rows bigint, result_bytes bigint)
LANGUAGE plpgsql STRICT STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    -- citus: PERFORM barrier_internal.check_citus_role('barrier_stats');
    RETURN QUERY
    SELECT count(*) FILTER (WHERE b.status = 'pending'
                              AND b.expires_at > statement_timestamp()),
           count(*) FILTER (WHERE b.status = 'complete'),
           count(*) FILTER (WHERE b.status = 'aborted'),
           count(*) FILTER (WHERE b.status = 'expired'
                               OR (b.status = 'pending'
                                   AND b.expires_at <= statement_timestamp())),
           count(*) FILTER (WHERE b.taken_at IS NULL
                              AND (b.status = 'complete'
                                   OR (b.status = 'expired' AND b.deliver))),
           statement_timestamp() - min(b.created_at)
             FILTER (WHERE b.status = 'pending' AND b.expires_at > statement_timestamp()
                       AND isfinite(b.created_at)),
           COALESCE(sum(CASE WHEN b.status = 'pending' THEN b.expected - b.remaining
                             WHEN b.taken_at IS NULL
                                  AND (b.status = 'complete'
                                       OR (b.status = 'expired' AND b.deliver))
                             THEN b.expected - b.remaining
                             ELSE 0 END), 0)::bigint,
           LEAST(COALESCE(sum(b.result_bytes), 0), 9223372036854775807)::bigint
      FROM barrier_internal.my_barrier AS b;
END
$$;

-- Every row written to results and specs, by the API or by hand, belongs to a barrier the writing
-- role may act on, decided before the row is written, on the barrier's newest row, which the
-- writer locks (FOR KEY SHARE) through its own view. A view's check option would decide on the
-- statement's snapshot, which a role can keep old (at REPEATABLE READ, or in one long statement)
-- while it deletes its barrier and another role enqueues the same id; a lock follows the row to
-- its newest version at READ COMMITTED, checking the view's condition again, and raises 40001 at
-- REPEATABLE READ if the row changed since the snapshot. So no role adds a result or spec to a
-- barrier that is another role's, and none learns from a unique violation whether another
-- role's slot has reported. (A role with the privileges of both could still move a barrier to
-- the other by hand while a write is under way: its own business.) A role that may write the
-- table itself (its owner, a superuser, a member of pg_write_all_data, as in a restore) is not
-- checked: the trigger would protect nothing from it. A NULL id is left to the NOT NULL
-- constraint.
CREATE FUNCTION barrier_internal.check_result_write() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.barrier_id IS NOT NULL AND NOT pg_catalog.has_table_privilege(TG_RELID, TG_OP) THEN
        PERFORM FROM barrier_internal.my_barrier AS b
          WHERE b.id OPERATOR(pg_catalog.=) NEW.barrier_id
            FOR KEY SHARE;
        IF NOT FOUND THEN
            PERFORM barrier_internal.deny('barrier_internal.result', NEW.barrier_id);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION barrier_internal.check_spec_write() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.id IS NOT NULL AND NOT pg_catalog.has_table_privilege(TG_RELID, TG_OP) THEN
        PERFORM FROM barrier_internal.my_barrier AS b
          WHERE b.id OPERATOR(pg_catalog.=) NEW.id
            FOR KEY SHARE;
        IF NOT FOUND THEN
            PERFORM barrier_internal.deny('barrier_internal.barrier_spec', NEW.id);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER barrier_result_owner BEFORE INSERT OR UPDATE ON barrier_internal.result
    FOR EACH ROW EXECUTE FUNCTION barrier_internal.check_result_write();
CREATE TRIGGER barrier_spec_owner BEFORE INSERT OR UPDATE ON barrier_internal.barrier_spec
    FOR EACH ROW EXECUTE FUNCTION barrier_internal.check_spec_write();

-- What every role may use: the schema, the views (which show each role its own barriers) and
-- the helpers, which the API calls as its caller. The tables stay closed.
GRANT USAGE ON SCHEMA barrier_internal TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON barrier_internal.my_barrier, barrier_internal.my_barrier_spec, barrier_internal.my_result
    TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA barrier_internal TO PUBLIC;
