-- The state tables of 0.4.0 (src/schema.sql): the columns of the fan-in shapes
-- (docs/shapes.md), the checks and the index that a quorum and a delivering expiry need. Every
-- existing barrier keeps a plain barrier's values. The Rust build's update
-- (sql/pg_barrier--0.3.2--0.4.0.sql) makes the same change.
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
        RAISE EXCEPTION 'pg_barrier: cannot update to 0.4.0-sql: it replaces 2 CHECK constraints of barrier_internal.barrier, and found % of them', dropped
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
