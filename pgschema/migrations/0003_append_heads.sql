-- Subscribers page through the log by (xid, position). Indexing every event
-- for that cost each event of a large append two index entries; indexing
-- only the first event of each append costs one entry per append whatever
-- its size, and a reader finds the rest of the append through the unique
-- (stream_id, version) index, since an append's versions are consecutive.
--
-- append_size is the number of events in the append this row begins, and 0
-- on the append's later rows. Rows written before this migration, and rows
-- inserted by hand, default to 1: each is an append of its own, which reads
-- in the same (xid, position) order as before.
ALTER TABLE {{schema}}.events ADD COLUMN append_size integer NOT NULL DEFAULT 1;

CREATE INDEX events_append_xid_position_idx ON {{schema}}.events (xid, position)
    WHERE append_size > 0;
CREATE INDEX events_append_category_xid_position_idx ON {{schema}}.events (category, xid, position)
    WHERE append_size > 0;

DROP INDEX {{schema}}.events_xid_position_idx;
DROP INDEX {{schema}}.events_category_xid_position_idx;
