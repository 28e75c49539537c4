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
-- callback) and no indexed column ever changes, so decrements are HOT updates. fillfactor leaves
-- room on the page for the new versions.
CREATE TABLE barrier_internal.barrier (
    id          text        NOT NULL PRIMARY KEY,
    round       bigint      NOT NULL CHECK (round > 0),
    owner       oid         NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'complete', 'aborted', 'expired')),
    expected    integer     NOT NULL CHECK (expected >= 0),
    remaining   integer     NOT NULL CHECK (remaining >= 0 AND remaining <= expected),
    slotted     boolean,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    finished_at timestamptz,
    CHECK ((status = 'pending') = (finished_at IS NULL)),
    CHECK (status <> 'complete' OR remaining = 0)
) WITH (fillfactor = 70);

-- What the enqueue asked for. Written by enqueue and abort, read at completion and by status;
-- a decrement never touches it.
CREATE TABLE barrier_internal.barrier_spec (
    id       text     NOT NULL PRIMARY KEY,
    callback jsonb,
    channel  text     NOT NULL,
    ttl      interval NOT NULL,
    reason   text
);

-- One row per counted task of the current round: `slot` is the task's slot for slotted barriers
-- and its arrival ordinal otherwise. Results are written once and never rewritten.
CREATE TABLE barrier_internal.result (
    barrier_id text    NOT NULL,
    slot       integer NOT NULL CHECK (slot >= 0),
    result     jsonb,
    PRIMARY KEY (barrier_id, slot)
);

REVOKE ALL ON TABLE barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result
    FROM PUBLIC;
