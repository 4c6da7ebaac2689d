-- Nodes (machines carrying traffic) and their per-protocol kernel records.
-- Control credentials are sealed with security.master_key (base64 of
-- znp_crypto_seal output, associated data "node:<id>:<field>"); the
-- plaintext is never stored. A deleted node keeps its row (deleted_at) so
-- its name stays taken and old audit rows still resolve.

CREATE TABLE nodes (
    id                                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                                  text NOT NULL CHECK (name <> ''),
    region                                text NOT NULL DEFAULT '',
    country                               text NOT NULL DEFAULT '',
    isp                                   text NOT NULL DEFAULT '',
    description                           text NOT NULL DEFAULT '',
    access_address                        text NOT NULL DEFAULT '',
    status                                smallint NOT NULL DEFAULT 2 CHECK (status IN (1, 2, 3, 4)),
    tags                                  text[] NOT NULL DEFAULT '{}',
    capacity_mbps                         integer NOT NULL DEFAULT 0 CHECK (capacity_mbps >= 0),
    control_endpoint                      text NOT NULL CHECK (control_endpoint <> ''),
    control_access_key_sealed             text,
    control_secret_key_sealed             text,
    control_token_sealed                  text,
    kernel_default_protocol               text NOT NULL DEFAULT 'http',
    kernel_http_timeout_seconds           integer NOT NULL DEFAULT 5 CHECK (kernel_http_timeout_seconds > 0),
    kernel_status_poll_interval_seconds   integer NOT NULL DEFAULT 30
        CHECK (kernel_status_poll_interval_seconds >= 0),
    kernel_status_poll_backoff_enabled    boolean NOT NULL DEFAULT true,
    kernel_status_poll_backoff_max_interval_seconds integer NOT NULL DEFAULT 300
        CHECK (kernel_status_poll_backoff_max_interval_seconds >= 0),
    kernel_status_poll_backoff_multiplier double precision NOT NULL DEFAULT 2
        CHECK (kernel_status_poll_backoff_multiplier > 1),
    kernel_status_poll_backoff_jitter     double precision NOT NULL DEFAULT 0.2
        CHECK (kernel_status_poll_backoff_jitter >= 0 AND kernel_status_poll_backoff_jitter <= 1),
    kernel_offline_probe_max_interval_seconds integer NOT NULL DEFAULT 0
        CHECK (kernel_offline_probe_max_interval_seconds >= 0),
    status_sync_enabled                   boolean NOT NULL DEFAULT true,
    last_synced_at                        timestamptz,
    created_at                            timestamptz NOT NULL DEFAULT now(),
    updated_at                            timestamptz NOT NULL DEFAULT now(),
    deleted_at                            timestamptz
);
-- names stay unique across deleted nodes too
CREATE UNIQUE INDEX nodes_name_key ON nodes (name);
CREATE INDEX nodes_listing_idx ON nodes (updated_at, id) WHERE deleted_at IS NULL;

CREATE TABLE node_kernels (
    node_id        bigint NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    protocol       text NOT NULL CHECK (protocol ~ '^[a-z0-9_-]{1,32}$'),
    endpoint       text NOT NULL CHECK (endpoint <> ''),
    revision       text NOT NULL DEFAULT '',
    status         smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2)), -- 1 configured, 2 synced
    config         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    last_synced_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, protocol)
);
