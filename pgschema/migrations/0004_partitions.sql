-- Partitioned projections: a projection of N partitions has N subscription
-- rows, one per partition, each with its own checkpoint, lease and fence. A
-- stream belongs to partition (hashtext(stream_id) & 2147483647) % N. An
-- unpartitioned projection is partition 0 of 1, as every existing row
-- becomes here, so its checkpoint carries over unchanged.
ALTER TABLE {{schema}}.subscriptions
    ADD COLUMN partition  integer NOT NULL DEFAULT 0,
    ADD COLUMN partitions integer NOT NULL DEFAULT 1,
    ADD CONSTRAINT subscriptions_partition_check CHECK (partitions >= 1 AND partition >= 0 AND partition < partitions);
ALTER TABLE {{schema}}.subscriptions DROP CONSTRAINT subscriptions_pkey;
ALTER TABLE {{schema}}.subscriptions ADD PRIMARY KEY (name, partition);

-- The runners hosting each partitioned projection: every runner heartbeats
-- its row, and the live rows (alive_until ahead of the database's clock)
-- decide which runner should hold which partition.
CREATE TABLE {{schema}}.subscription_members (
    name        text        NOT NULL,
    owner       text        NOT NULL,
    alive_until timestamptz NOT NULL,
    PRIMARY KEY (name, owner)
);
