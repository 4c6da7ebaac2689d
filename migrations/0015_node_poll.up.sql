-- Status poller state, one row per polled node. It lives in the database so
-- a restart keeps the backoff and any instance can continue the polling.
-- settings_hash is an md5 over the node's endpoint, sealed credentials,
-- timeout and poll settings: when it changes, the poller resets the row.
-- lease_until marks a poll in flight, so another tick does not start a second
-- one before the first has answered or timed out.
CREATE TABLE node_poll_state (
    node_id        bigint PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    settings_hash  text NOT NULL,
    failures       integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    probe_attempts integer NOT NULL DEFAULT 0 CHECK (probe_attempts >= 0),
    probe_day      integer NOT NULL DEFAULT 0,
    next_due_at    timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    last_polled_at timestamptz,
    last_ok_at     timestamptz,
    last_error     text NOT NULL DEFAULT ''
);
CREATE INDEX node_poll_state_due_idx ON node_poll_state (next_due_at);
