-- Sagas (package sagas): durable timers and the instances' read model.

-- A timer of a saga step that awaits a response: written in the
-- transaction that starts the step, deleted in the transaction that
-- appends its TimedOut event to the instance's stream (or that settles the
-- step first), so it fires at most once into the log and is never lost.
CREATE TABLE {{schema}}.saga_timers (
    saga        text        NOT NULL,
    instance_id text        NOT NULL,
    step        text        NOT NULL,
    attempt     integer     NOT NULL,
    due_at      timestamptz NOT NULL,
    PRIMARY KEY (saga, instance_id, step, attempt)
);
CREATE INDEX saga_timers_due ON {{schema}}.saga_timers (saga, due_at);

-- Each saga instance's status, kept in the transaction of every decision
-- of the saga's projection, for listing instances by status.
CREATE TABLE {{schema}}.saga_instances (
    saga        text        NOT NULL,
    instance_id text        NOT NULL,
    status      text        NOT NULL,
    step        text        NOT NULL DEFAULT '',
    reason      text        NOT NULL DEFAULT '',
    version     bigint      NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga, instance_id)
);
CREATE INDEX saga_instances_status ON {{schema}}.saga_instances (saga, status);
