-- pg_barrier 0.1.0 -> 0.2.0: sweeping, durable completions, dynamic fan-out, settings, stats.
-- Runs inside ALTER EXTENSION pg_barrier UPDATE; live barriers carry on.

-- Owners dump as role names.
ALTER TABLE barrier_internal.barrier ALTER COLUMN owner TYPE regrole USING owner::regrole;

-- Progress time for stall detection; until now, a barrier's last progress is unknown: use its
-- creation.
ALTER TABLE barrier_internal.barrier ADD COLUMN progress_at timestamptz;
UPDATE barrier_internal.barrier SET progress_at = created_at;
ALTER TABLE barrier_internal.barrier ALTER COLUMN progress_at SET NOT NULL;
ALTER TABLE barrier_internal.barrier
    ALTER COLUMN progress_at SET DEFAULT pg_catalog.statement_timestamp();

-- When a completion was handed to a consumer (barrier_take, barrier_completions).
ALTER TABLE barrier_internal.barrier ADD COLUMN taken_at timestamptz;

-- The weight of the round's results as one jsonb array, capped so a completion can be built.
ALTER TABLE barrier_internal.barrier
    ADD COLUMN result_bytes bigint NOT NULL DEFAULT 0 CHECK (result_bytes >= 0);
UPDATE barrier_internal.barrier b
   SET result_bytes = s.bytes
  FROM (SELECT barrier_id,
               sum(COALESCE(pg_catalog.pg_column_size(result), 0) + 8)::bigint AS bytes
          FROM barrier_internal.result GROUP BY barrier_id) s
 WHERE s.barrier_id = b.id;
ALTER TABLE barrier_internal.barrier ADD CHECK (taken_at IS NULL OR status = 'complete');

CREATE INDEX barrier_pending_expiry ON barrier_internal.barrier (expires_at)
    WHERE status = 'pending';
CREATE INDEX barrier_finished_age ON barrier_internal.barrier (finished_at)
    WHERE status <> 'pending';
CREATE INDEX barrier_untaken ON barrier_internal.barrier (finished_at)
    WHERE status = 'complete' AND taken_at IS NULL;

ALTER TABLE barrier_internal.barrier_spec ADD COLUMN stall_timeout interval;
CREATE INDEX barrier_spec_stall ON barrier_internal.barrier_spec (id)
    WHERE stall_timeout IS NOT NULL;

SELECT pg_catalog.pg_extension_config_dump('barrier_internal.barrier', '');
SELECT pg_catalog.pg_extension_config_dump('barrier_internal.barrier_spec', '');
SELECT pg_catalog.pg_extension_config_dump('barrier_internal.result', '');

-- barrier_enqueue gains stall_timeout: a new signature (and C symbol) replaces the old one; the
-- library still serves the old symbol for databases not yet updated.
DROP FUNCTION barrier_enqueue(text, integer, jsonb, interval, text, boolean);
CREATE  FUNCTION "barrier_enqueue"(
	"id" TEXT, /* Option < & str > */
	"expected" INT, /* Option < i32 > */
	"callback" jsonb DEFAULT NULL, /* Option < RawJsonb > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"channel" TEXT DEFAULT NULL, /* Option < & str > */
	"replace" bool DEFAULT false, /* Option < bool > */
	"stall_timeout" interval DEFAULT NULL /* Option < Interval > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_enqueue_v2_wrapper';

-- New functions.
CREATE  FUNCTION "barrier_sweep"(
	"max_rows" INT DEFAULT 10000 /* Option < i32 > */
) RETURNS TABLE (
	"expired" bigint,  /* i64 */
	"deleted" bigint  /* i64 */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_sweep_wrapper';
CREATE  FUNCTION "barrier_take"(
	"id" TEXT /* Option < & str > */
) RETURNS TABLE (
	"results" jsonb,  /* RawJsonb */
	"callback" jsonb  /* Option < RawJsonb > */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_take_wrapper';
CREATE  FUNCTION "barrier_completions"(
	"channel" TEXT DEFAULT NULL, /* Option < & str > */
	"max_rows" INT DEFAULT 100 /* Option < i32 > */
) RETURNS TABLE (
	"id" TEXT,  /* String */
	"finished_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"results" jsonb,  /* RawJsonb */
	"callback" jsonb  /* Option < RawJsonb > */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_completions_wrapper';
CREATE  FUNCTION "barrier_add"(
	"id" TEXT, /* Option < & str > */
	"extra" INT /* Option < i32 > */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_add_wrapper';
CREATE  FUNCTION "barrier_stats"() RETURNS TABLE (
	"pending" bigint,  /* i64 */
	"complete" bigint,  /* i64 */
	"aborted" bigint,  /* i64 */
	"expired" bigint,  /* i64 */
	"untaken" bigint,  /* i64 */
	"oldest_pending_age" interval,  /* Option < Interval > */
	"result_rows" bigint,  /* i64 */
	"result_bytes" bigint  /* i64 */
)
STRICT STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_stats_wrapper';

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
