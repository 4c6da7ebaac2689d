-- Protocol bindings (one protocol instance on a node's kernel, the unit
-- pushed to the kernel) and protocol entries (the public address users
-- connect to; an entry's health is its binding's). Deleting a binding
-- deletes its entries and plan links through the foreign keys, in the same
-- transaction as the DELETE.

CREATE TABLE protocol_bindings (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_id           bigint NOT NULL REFERENCES nodes (id),
    name              text NOT NULL DEFAULT '',
    protocol          text NOT NULL CHECK (protocol ~ '^[a-z0-9_-]{1,32}$'),
    role              text NOT NULL CHECK (role IN ('listener', 'connector')),
    kernel_id         text NOT NULL CHECK (kernel_id <> ''),
    listen            text NOT NULL DEFAULT '',
    connect           text NOT NULL DEFAULT '',
    access_port       integer NOT NULL DEFAULT 0 CHECK (access_port BETWEEN 0 AND 65535),
    status            smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),          -- 1 active, 2 disabled
    sync_status       smallint NOT NULL DEFAULT 1 CHECK (sync_status IN (1, 2, 3)),  -- 1 pending, 2 synced, 3 error
    health_status     smallint NOT NULL DEFAULT 0 CHECK (health_status BETWEEN 0 AND 4),
    -- 0 unknown, 1 healthy, 2 degraded, 3 unhealthy, 4 offline
    last_synced_at    timestamptz,
    last_heartbeat_at timestamptz,
    last_sync_error   text NOT NULL DEFAULT '',
    tags              text[] NOT NULL DEFAULT '{}',
    description       text NOT NULL DEFAULT '',
    profile           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(profile) = 'object'),
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- one kernel protocol id per node: the kernel keys its protocols by it
CREATE UNIQUE INDEX protocol_bindings_kernel_key ON protocol_bindings (node_id, kernel_id);
CREATE INDEX protocol_bindings_listing_idx ON protocol_bindings (updated_at, id);
CREATE INDEX protocol_bindings_protocol_idx ON protocol_bindings (protocol);

CREATE TABLE protocol_entries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    binding_id    bigint NOT NULL REFERENCES protocol_bindings (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name <> ''),
    protocol      text NOT NULL CHECK (protocol ~ '^[a-z0-9_-]{1,32}$'),
    status        smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2)), -- 1 active, 2 disabled
    entry_address text NOT NULL CHECK (entry_address <> ''),           -- IPv6 stored bare
    entry_port    integer NOT NULL CHECK (entry_port BETWEEN 1 AND 65535),
    tags          text[] NOT NULL DEFAULT '{}',
    description   text NOT NULL DEFAULT '',
    profile       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(profile) = 'object'),
    sort_order    integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX protocol_entries_binding_idx ON protocol_entries (binding_id);
CREATE INDEX protocol_entries_listing_idx ON protocol_entries (updated_at, id);

-- Links made before bindings existed cannot point anywhere; drop them.
DELETE FROM plan_bindings WHERE binding_id NOT IN (SELECT id FROM protocol_bindings);
ALTER TABLE plan_bindings
    ADD CONSTRAINT plan_bindings_binding_fkey FOREIGN KEY (binding_id) REFERENCES protocol_bindings (id) ON DELETE CASCADE;

-- Event registrations made on a kernel, remembered so a sync does not
-- register the same callback again. A registration is keyed by the node and
-- the callback it points to; changing the callback URL or secret makes a new
-- row (and the sync removes the stale registration from the kernel).
CREATE TABLE kernel_event_registrations (
    node_id         bigint NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('node', 'service')),
    event           text NOT NULL CHECK (event <> ''),
    callback        text NOT NULL CHECK (callback <> ''),
    secret_hash     text NOT NULL DEFAULT '', -- hex SHA-256 of the secret sent, '' when none
    registration_id text NOT NULL DEFAULT '', -- the kernel's id, for DELETE
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, kind, event)
);

-- Who may use a binding: users holding an effective subscription (active,
-- not expired) on a plan linked to the binding now. The live plan mapping is
-- used everywhere (kernel sync, node-backend user lists, downloads, the user
-- node view), so a changed mapping reaches every path at once. A used-up
-- quota excludes the user at once, before the expiry job marks the
-- subscription. One row per
-- (binding, user); when a user holds several qualifying subscriptions, the
-- most recently updated one is reported.
CREATE VIEW binding_eligible_users AS
SELECT DISTINCT ON (pb.binding_id, s.user_id)
       pb.binding_id,
       s.user_id,
       s.id AS subscription_id,
       s.plan_id,
       s.devices_limit,
       s.expires_at,
       s.traffic_total_bytes,
       s.traffic_used_bytes
  FROM plan_bindings pb
  JOIN subscriptions s ON s.plan_id = pb.plan_id
  JOIN users u ON u.id = s.user_id
 WHERE s.status = 1
   AND (s.expires_at IS NULL OR s.expires_at > now())
   AND (s.traffic_total_bytes = 0 OR s.traffic_used_bytes < s.traffic_total_bytes)
   AND u.status = 1
 ORDER BY pb.binding_id, s.user_id, s.updated_at DESC, s.id DESC;
