-- Plans and their billing options. Money is integer minor units with an
-- ISO 4217 currency; nothing here stores a float except the per-protocol
-- traffic multipliers, which are ratios, not money.

CREATE TABLE plans (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   text NOT NULL CHECK (name <> ''),
    slug                   text NOT NULL CHECK (slug ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
    description            text NOT NULL DEFAULT '',
    tags                   text[] NOT NULL DEFAULT '{}',
    features               text[] NOT NULL DEFAULT '{}',
    price_cents            bigint NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
    currency               char(3) NOT NULL DEFAULT 'CNY' CHECK (currency ~ '^[A-Z]{3}$'),
    duration_days          integer NOT NULL DEFAULT 0 CHECK (duration_days >= 0),
    traffic_limit_bytes    bigint NOT NULL DEFAULT 0 CHECK (traffic_limit_bytes >= 0), -- 0 = unlimited
    traffic_multipliers    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(traffic_multipliers) = 'object'),
    devices_limit          integer NOT NULL DEFAULT 0 CHECK (devices_limit >= 0),     -- 0 = unlimited
    traffic_reset_schedule text NOT NULL DEFAULT 'none'
        CHECK (traffic_reset_schedule IN ('none', 'first_of_month', 'monthly_on_purchase_day', 'yearly')),
    sort_order             integer NOT NULL DEFAULT 0,
    status                 smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3)), -- 1 draft, 2 active, 3 archived
    visible                boolean NOT NULL DEFAULT false,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
-- slugs are stored lower-case; the index on lower() keeps them unique whatever the input case
CREATE UNIQUE INDEX plans_slug_key ON plans (lower(slug));
CREATE INDEX plans_listing_idx ON plans (status, visible, sort_order, id);

-- The protocol bindings a plan grants. The bindings table does not exist
-- yet, so binding_id has no foreign key; the module that adds bindings
-- should add the constraint (and delete the links of a deleted binding).
CREATE TABLE plan_bindings (
    plan_id    bigint NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    binding_id bigint NOT NULL CHECK (binding_id > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plan_id, binding_id)
);
CREATE INDEX plan_bindings_binding_idx ON plan_bindings (binding_id);

CREATE TABLE plan_billing_options (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id        bigint NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (name <> ''),
    duration_value integer NOT NULL CHECK (duration_value > 0),
    duration_unit  text NOT NULL CHECK (duration_unit IN ('hour', 'day', 'month', 'year')),
    price_cents    bigint NOT NULL CHECK (price_cents >= 0),
    currency       char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    sort_order     integer NOT NULL DEFAULT 0,
    status         smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3)), -- 1 draft, 2 active, 3 archived
    visible        boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_billing_options_plan_idx ON plan_billing_options (plan_id, sort_order, duration_value, id);

-- Subscriptions: what a user holds on a plan. plan_snapshot is the plan as it
-- was when the subscription was created or moved to another plan. The token
-- is 128 random bits in base64url and unique. expires_at NULL never expires.
-- At most one subscription per user is effective (active and not expired):
-- the writes that make one effective disable the user's other active ones.
CREATE TABLE subscriptions (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                   text NOT NULL CHECK (name <> ''),
    plan_id                bigint NOT NULL REFERENCES plans (id),
    plan_name              text NOT NULL,
    plan_snapshot          jsonb NOT NULL DEFAULT '{}',
    status                 smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3)), -- 1 active, 2 disabled, 3 expired
    -- NOTE: the templates table does not exist yet, so template ids have no foreign key
    template_id            bigint CHECK (template_id > 0),
    available_template_ids bigint[] NOT NULL DEFAULT '{}',
    token                  text NOT NULL UNIQUE CHECK (token ~ '^[A-Za-z0-9_-]{22}$'),
    expires_at             timestamptz,
    traffic_total_bytes    bigint NOT NULL DEFAULT 0 CHECK (traffic_total_bytes >= 0), -- 0 = unlimited
    traffic_used_bytes     bigint NOT NULL DEFAULT 0 CHECK (traffic_used_bytes >= 0),
    devices_limit          integer NOT NULL DEFAULT 0 CHECK (devices_limit >= 0),      -- 0 = unlimited
    last_refreshed_at      timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_user_idx ON subscriptions (user_id, status);
CREATE INDEX subscriptions_plan_idx ON subscriptions (plan_id);
CREATE INDEX subscriptions_updated_idx ON subscriptions (updated_at, id);
