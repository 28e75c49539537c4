-- pg_barrier 0.3.2 -> 0.4.0: the fan-in shapes (docs/shapes.md). Runs inside ALTER EXTENSION
-- pg_barrier UPDATE; live barriers carry on as plain barriers.
--
-- The tables change as sql-edition/update--0.3.2-sql--0.4.0-sql.sql changes them for the SQL
-- edition; the functions whose arguments or result columns grew are dropped and created as
-- pgrx generates them (sql/pg_barrier--0.4.0.sql), and two are new.

ALTER TABLE barrier_internal.barrier
    ADD COLUMN failed  integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    ADD COLUMN need    integer CHECK (need > 0),
    ADD COLUMN sealed  boolean NOT NULL DEFAULT true,
    ADD COLUMN deliver boolean NOT NULL DEFAULT false;
-- The two checks that change, found by their definition (their names were chosen by
-- PostgreSQL when 0.1.0 was installed). Both must go: the old completion check would refuse
-- every quorum's completion, so an update that does not find them stops here.
DO $$
DECLARE
    name text;
    dropped integer := 0;
BEGIN
    FOR name IN
        SELECT c.conname FROM pg_catalog.pg_constraint AS c
         WHERE c.conrelid OPERATOR(pg_catalog.=) 'barrier_internal.barrier'::pg_catalog.regclass
           AND c.contype OPERATOR(pg_catalog.=) 'c'
           AND pg_catalog.pg_get_constraintdef(c.oid) OPERATOR(pg_catalog.=) ANY (ARRAY[
               'CHECK (((status <> ''complete''::text) OR (remaining = 0)))',
               'CHECK (((taken_at IS NULL) OR (status = ''complete''::text)))'])
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE barrier_internal.barrier DROP CONSTRAINT %I', name);
        dropped := dropped OPERATOR(pg_catalog.+) 1;
    END LOOP;
    IF dropped OPERATOR(pg_catalog.<>) 2 THEN
        RAISE EXCEPTION 'pg_barrier: cannot update to 0.4.0: it replaces 2 CHECK constraints of barrier_internal.barrier, and found % of them', dropped
            USING ERRCODE = '55000',
                  HINT = 'The constraints "status <> ''complete'' OR remaining = 0" and "taken_at IS NULL OR status = ''complete''" of 0.3.2 must be in place, unchanged.';
    END IF;
END
$$;
ALTER TABLE barrier_internal.barrier
    ADD CHECK (status <> 'complete' OR remaining = 0 OR need IS NOT NULL),
    ADD CHECK (taken_at IS NULL OR status = 'complete' OR (status = 'expired' AND deliver));
DROP INDEX barrier_internal.barrier_untaken;
CREATE INDEX barrier_untaken ON barrier_internal.barrier (finished_at)
    WHERE taken_at IS NULL AND (status = 'complete' OR (status = 'expired' AND deliver));

ALTER TABLE barrier_internal.barrier_spec
    ADD COLUMN max_failures integer CHECK (max_failures >= 0),
    ADD COLUMN parent       text COLLATE "C",
    ADD COLUMN parent_slot  integer CHECK (parent_slot >= 0),
    ADD CHECK ((parent IS NULL) = (parent_slot IS NULL));
-- One child per slot of its parent (enqueue checks it first, under the parent's row lock).
CREATE UNIQUE INDEX barrier_spec_parent ON barrier_internal.barrier_spec (parent, parent_slot)
    WHERE parent IS NOT NULL;

ALTER TABLE barrier_internal.result ADD COLUMN failed boolean NOT NULL DEFAULT false;

-- Their arguments or result columns change: a new definition cannot replace them in place.
DROP FUNCTION barrier_completions(text, integer);
DROP FUNCTION barrier_decr(text, jsonb, integer);
DROP FUNCTION barrier_enqueue(text, integer, jsonb, interval, text, boolean, interval);
DROP FUNCTION barrier_status(text);
DROP FUNCTION barrier_take(text);

-- pg_barrier::completions::barrier_completions
CREATE  FUNCTION "barrier_completions"(
	"channel" TEXT DEFAULT NULL, /* Option < & str > */
	"max_rows" INT DEFAULT 100 /* Option < i32 > */
) RETURNS TABLE (
	"id" TEXT,  /* String */
	"finished_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"results" jsonb,  /* RawJsonb */
	"callback" jsonb,  /* Option < RawJsonb > */
	"status" TEXT,  /* String */
	"failed_slots" INT[],  /* Vec < i32 > */
	"errors" jsonb,  /* RawJsonb */
	"missing_slots" INT[]  /* Vec < i32 > */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_completions_wrapper';

-- pg_barrier::report::barrier_decr
CREATE  FUNCTION "barrier_decr"(
	"id" TEXT, /* Option < & str > */
	"result" jsonb DEFAULT NULL, /* Option < RawJsonb > */
	"slot" INT DEFAULT NULL, /* Option < i32 > */
	"failed" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"status" TEXT,  /* String */
	"remaining" INT,  /* Option < i32 > */
	"results" jsonb,  /* Option < RawJsonb > */
	"callback" jsonb,  /* Option < RawJsonb > */
	"failed_slots" INT[],  /* :: std :: option :: Option < Vec < i32 > > */
	"errors" jsonb,  /* Option < RawJsonb > */
	"missing_slots" INT[]  /* :: std :: option :: Option < Vec < i32 > > */
)
VOLATILE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_decr_v2_wrapper';

-- pg_barrier::lifecycle::barrier_enqueue
CREATE  FUNCTION "barrier_enqueue"(
	"id" TEXT, /* Option < & str > */
	"expected" INT, /* Option < i32 > */
	"callback" jsonb DEFAULT NULL, /* Option < RawJsonb > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"channel" TEXT DEFAULT NULL, /* Option < & str > */
	"replace" bool DEFAULT false, /* Option < bool > */
	"stall_timeout" interval DEFAULT NULL, /* Option < Interval > */
	"max_failures" INT DEFAULT NULL, /* Option < i32 > */
	"need" INT DEFAULT NULL, /* Option < i32 > */
	"sealed" bool DEFAULT true, /* Option < bool > */
	"on_expiry" TEXT DEFAULT 'discard', /* Option < & str > */
	"parent" TEXT DEFAULT NULL, /* Option < & str > */
	"parent_slot" INT DEFAULT NULL /* Option < i32 > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_enqueue_v3_wrapper';

-- pg_barrier::inspect::barrier_pending_slots
CREATE  FUNCTION "barrier_pending_slots"(
	"id" TEXT, /* Option < & str > */
	"max_rows" INT DEFAULT 1000, /* Option < i32 > */
	"after" INT DEFAULT NULL /* Option < i32 > */
) RETURNS TABLE (
	"slot" INT  /* i32 */
)
STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_pending_slots_wrapper';

-- pg_barrier::lifecycle::barrier_seal
CREATE  FUNCTION "barrier_seal"(
	"id" TEXT /* Option < & str > */
) RETURNS TABLE (
	"status" TEXT,  /* String */
	"remaining" INT,  /* Option < i32 > */
	"results" jsonb,  /* Option < RawJsonb > */
	"callback" jsonb,  /* Option < RawJsonb > */
	"failed_slots" INT[],  /* :: std :: option :: Option < Vec < i32 > > */
	"errors" jsonb,  /* Option < RawJsonb > */
	"missing_slots" INT[]  /* :: std :: option :: Option < Vec < i32 > > */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_seal_wrapper';

-- pg_barrier::inspect::barrier_status
CREATE  FUNCTION "barrier_status"(
	"id" TEXT /* Option < & str > */
) RETURNS TABLE (
	"id" TEXT,  /* String */
	"status" TEXT,  /* String */
	"expected" INT,  /* i32 */
	"remaining" INT,  /* i32 */
	"created_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"expires_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"finished_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"channel" TEXT,  /* String */
	"callback" jsonb,  /* Option < RawJsonb > */
	"reason" TEXT,  /* Option < String > */
	"round" bigint,  /* i64 */
	"failed" INT,  /* i32 */
	"sealed" bool,  /* bool */
	"need" INT  /* Option < i32 > */
)
STABLE PARALLEL RESTRICTED
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_status_wrapper';

-- pg_barrier::completions::barrier_take
CREATE  FUNCTION "barrier_take"(
	"id" TEXT /* Option < & str > */
) RETURNS TABLE (
	"results" jsonb,  /* RawJsonb */
	"callback" jsonb,  /* Option < RawJsonb > */
	"status" TEXT,  /* String */
	"failed_slots" INT[],  /* Vec < i32 > */
	"errors" jsonb,  /* RawJsonb */
	"missing_slots" INT[]  /* Vec < i32 > */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'barrier_take_wrapper';
