-- pg_barrier state. Everything is keyed by barrier id: no global sequence, no global counter.
--
-- The schema is created here (not IF NOT EXISTS): if someone already owns a schema of this name
-- the install fails instead of trusting objects they control.
-- Ids, channels and reasons are handled as UTF-8 text.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'pg_barrier requires a UTF8 database, this one is %',
                        pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8''.';
    END IF;
END
$$;

CREATE SCHEMA barrier_internal;
COMMENT ON SCHEMA barrier_internal IS 'pg_barrier state; use the barrier_* functions, not these tables';
REVOKE ALL ON SCHEMA barrier_internal FROM PUBLIC;

-- The hot row: one per barrier id, rewritten by every decrement. It stays narrow (no results, no
-- callback), and a decrement changes no indexed column (the partial indexes below depend on
-- status, expires_at and finished_at, which only enqueue and the end of a round change), so
-- decrements are HOT updates. fillfactor leaves room on the page for the new versions.
-- `owner` is a regrole so that pg_dump writes the role's name, not an oid of another cluster.
-- Ids are opaque keys, compared byte for byte (COLLATE "C"): cheaper than a linguistic collation
-- on every index step, and the same in every database.
CREATE TABLE barrier_internal.barrier (
    id          text        COLLATE "C" NOT NULL PRIMARY KEY,
    round       bigint      NOT NULL CHECK (round > 0),
    owner       regrole     NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'complete', 'aborted', 'expired')),
    expected    integer     NOT NULL CHECK (expected >= 0),
    remaining   integer     NOT NULL CHECK (remaining >= 0 AND remaining <= expected),
    slotted     boolean,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    finished_at timestamptz,
    progress_at timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    taken_at    timestamptz,
    -- What the round's results will weigh as one jsonb array (bytes, with per-element overhead):
    -- capped so that the completion can always be built.
    result_bytes bigint     NOT NULL DEFAULT 0 CHECK (result_bytes >= 0),
    -- The shapes of docs/shapes.md (all four keep a plain barrier's defaults): failed reports
    -- held now, the quorum (NULL: every task), whether the fan-in is sealed, and whether expiry
    -- delivers the results so far. Only a report that fails or re-arms changes `failed`.
    failed      integer     NOT NULL DEFAULT 0 CHECK (failed >= 0),
    need        integer     CHECK (need > 0),
    sealed      boolean     NOT NULL DEFAULT true,
    deliver     boolean     NOT NULL DEFAULT false,
    CHECK ((status = 'pending') = (finished_at IS NULL)),
    CHECK (status <> 'complete' OR remaining = 0 OR need IS NOT NULL),
    CHECK (taken_at IS NULL OR status = 'complete' OR (status = 'expired' AND deliver))
) WITH (fillfactor = 70);

-- What the sweep looks for: live barriers by deadline, finished ones by age.
CREATE INDEX barrier_pending_expiry ON barrier_internal.barrier (expires_at)
    WHERE status = 'pending';
CREATE INDEX barrier_finished_age ON barrier_internal.barrier (finished_at)
    WHERE status <> 'pending';
-- Completions waiting for a consumer: complete ones, and expired ones that deliver.
CREATE INDEX barrier_untaken ON barrier_internal.barrier (finished_at)
    WHERE taken_at IS NULL AND (status = 'complete' OR (status = 'expired' AND deliver));

-- What the enqueue asked for. Written by enqueue and by the end of a round (its reason), read at
-- completion and by status; a decrement never touches it.
CREATE TABLE barrier_internal.barrier_spec (
    id            text     COLLATE "C" NOT NULL PRIMARY KEY,
    callback      jsonb,
    channel       text     NOT NULL,
    ttl           interval NOT NULL,
    reason        text,
    stall_timeout interval,
    -- More failures than this abort the barrier (NULL: no limit).
    max_failures  integer  CHECK (max_failures >= 0),
    -- A nested barrier reports into slot `parent_slot` of barrier `parent`.
    parent        text     COLLATE "C",
    parent_slot   integer  CHECK (parent_slot >= 0),
    CHECK ((parent IS NULL) = (parent_slot IS NULL))
);

CREATE INDEX barrier_spec_stall ON barrier_internal.barrier_spec (id)
    WHERE stall_timeout IS NOT NULL;
-- The children of a barrier, by the slot they claim: one child per slot. (Enqueue checks it
-- first under the parent's row lock, with its own SQLSTATE; this holds it at any isolation level.)
CREATE UNIQUE INDEX barrier_spec_parent ON barrier_internal.barrier_spec (parent, parent_slot)
    WHERE parent IS NOT NULL;

-- One row per counted task of the current round: `slot` is the task's slot for slotted barriers
-- and its arrival ordinal otherwise. Results are written once and never rewritten, except that a
-- failed report (`failed`, its error in `result`) is replaced by the slot's later success.
--
-- The rule every write path of both editions keeps: it holds the barrier's row lock (FOR NO KEY
-- UPDATE or stronger, taken before it looks at the results) and updates the barrier's row in the
-- same transaction. (Rows a role writes by hand through the SQL edition's views need not; that
-- edition has no fast path.) The library's fast path relies on it: a report whose
-- update of the barrier row succeeds knows that no result of that barrier was written since its
-- snapshot (src/fast_path.rs).
CREATE TABLE barrier_internal.result (
    barrier_id text    COLLATE "C" NOT NULL,
    slot       integer NOT NULL CHECK (slot >= 0),
    result     jsonb,
    failed     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (barrier_id, slot)
);

REVOKE ALL ON TABLE barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result
    FROM PUBLIC;

-- pg_dump saves the state with the extension, so a restored database resumes its barriers.
SELECT pg_catalog.pg_extension_config_dump('barrier_internal.barrier', '');
SELECT pg_catalog.pg_extension_config_dump('barrier_internal.barrier_spec', '');
SELECT pg_catalog.pg_extension_config_dump('barrier_internal.result', '');
