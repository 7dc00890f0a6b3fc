-- Streams: one row per stream, holding its current version. Appends update
-- this row in the same statement that inserts the events, so the row is the
-- optimistic-concurrency check and the lock a TxScope takes.
CREATE TABLE {{schema}}.streams (
    stream_id   text        PRIMARY KEY,
    category    text        NOT NULL,
    version     bigint      NOT NULL CHECK (version > 0),
    -- The transaction that last appended to the stream, and the one before it
    -- (so an append can record its predecessor's transaction; projections use
    -- it to keep per-stream order across transactions).
    last_xid    xid8        NOT NULL DEFAULT pg_current_xact_id(),
    prev_xid    xid8
);

CREATE TABLE {{schema}}.events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    category       text        NOT NULL,
    event_id       uuid        NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL DEFAULT 1,
    data           jsonb       NOT NULL,
    metadata       jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction, for gap-safe subscriber ordering.
    xid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- The transaction of the stream's previous append (NULL for the first).
    prev_xid       xid8,
    CONSTRAINT events_stream_id_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_xid_position_idx ON {{schema}}.events (xid, position);
CREATE INDEX events_category_position_idx ON {{schema}}.events (category, position);

CREATE TABLE {{schema}}.snapshots (
    stream_id      text        PRIMARY KEY,
    version        bigint      NOT NULL,
    schema_version integer     NOT NULL,
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now()
);
