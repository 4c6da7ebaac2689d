-- Traffic accounting. A kernel report is counted once per (node, report
-- id): its key is inserted in the same transaction as its records, so a
-- retransmitted report finds the key and adds nothing. Keys older than the
-- retention of the traffic.purge_reports job are deleted by that job; a
-- report retransmitted after that would count again.

-- a + b clamped to the bigint range instead of raising "bigint out of range"
CREATE FUNCTION traffic_saturating_add(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN b > 0 AND a > 9223372036854775807 - b THEN 9223372036854775807
        WHEN b < 0 AND a < -9223372036854775808 - b THEN -9223372036854775808
        ELSE a + b
    END
$$;

CREATE TABLE traffic_reports (
    node_id     bigint NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    report_id   text NOT NULL CHECK (report_id <> '' AND length(report_id) <= 128),
    accepted    integer NOT NULL DEFAULT 0 CHECK (accepted >= 0),
    failed      integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, report_id)
);
CREATE INDEX traffic_reports_received_idx ON traffic_reports (received_at);

-- One counted usage record; node_id and binding_id are as reported (0 when
-- unknown) and keep no foreign key, so deleting a node keeps its history.
CREATE TABLE traffic_records (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    user_id         bigint NOT NULL,
    node_id         bigint NOT NULL DEFAULT 0,
    binding_id      bigint NOT NULL DEFAULT 0,
    protocol        text NOT NULL DEFAULT '',
    report_id       text NOT NULL DEFAULT '',
    bytes_up        bigint NOT NULL CHECK (bytes_up >= 0),
    bytes_down      bigint NOT NULL CHECK (bytes_down >= 0),
    raw_bytes       bigint NOT NULL CHECK (raw_bytes >= 0),
    charged_bytes   bigint NOT NULL CHECK (charged_bytes >= 0),
    multiplier      double precision NOT NULL CHECK (multiplier > 0),
    observed_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX traffic_records_subscription_idx ON traffic_records (subscription_id, observed_at);

-- Per-day totals of each subscription and protocol; `day` is the calendar
-- day of observed_at in the panel time zone (panel.time_zone).
CREATE TABLE traffic_daily (
    subscription_id bigint NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    day             date NOT NULL,
    protocol        text NOT NULL DEFAULT '',
    raw_bytes       bigint NOT NULL DEFAULT 0 CHECK (raw_bytes >= 0),
    charged_bytes   bigint NOT NULL DEFAULT 0 CHECK (charged_bytes >= 0),
    PRIMARY KEY (subscription_id, day, protocol)
);

-- The last absolute `used` value each node reported for each user through
-- the service-event path; the next one is turned into an increment against it.
CREATE TABLE traffic_absolute_marks (
    node_id    bigint NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_bytes bigint NOT NULL CHECK (used_bytes >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, user_id)
);
