-- Subscriptions: one row per projection, holding its checkpoint, its lease
-- and its state. A worker writes the checkpoint only WHERE fence = its own
-- token; every takeover (and every admin operation) raises the fence.
CREATE TABLE {{schema}}.subscriptions (
    name            text        PRIMARY KEY,
    -- The reader's cursor: the last (transaction, position) read.
    cursor_xid      xid8        NOT NULL DEFAULT '0',
    cursor_position bigint      NOT NULL DEFAULT 0,
    -- Events at or below this position are never read (set by the admin
    -- operation that moves a checkpoint to the watermark after a restore).
    floor_position  bigint      NOT NULL DEFAULT 0,
    -- Positions of events read but held back until their stream's earlier
    -- events (written by a transaction that sorts later) are delivered.
    held            bigint[]    NOT NULL DEFAULT '{}',
    delivered       bigint      NOT NULL DEFAULT 0,
    -- The categories the projection reads (NULL: all), for its status.
    categories      text[],
    owner           text,
    lease_until     timestamptz,
    fence           bigint      NOT NULL DEFAULT 0,
    state           text        NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'halted')),
    last_error      text,
    error_position  bigint,
    error_stream    text,
    error_version   bigint,
    error_type      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Projections limited to some categories page by (category, xid, position).
CREATE INDEX events_category_xid_position_idx ON {{schema}}.events (category, xid, position);
