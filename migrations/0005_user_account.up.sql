-- Account self-service and admin user management: the account locale,
-- proxy-protocol credentials, the balance and its ledger, and the record of
-- wrong current passwords that rate-limits password changes.

ALTER TABLE users ADD COLUMN locale text NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'zh-CN'));

-- One row per credential version. secret_sealed is the 32-byte seed sealed
-- under security.master_key (src/core/crypto.h), base64; key_id names the key.
-- At most one active (status 1) version per user.
CREATE TABLE user_credentials (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version           integer NOT NULL CHECK (version > 0),
    status            smallint NOT NULL CHECK (status IN (1, 2, 3)), -- 1 active, 2 deprecated, 3 revoked
    key_id            text NOT NULL,
    secret_sealed     text NOT NULL,
    fingerprint       text NOT NULL,
    rotated_from_id   bigint REFERENCES user_credentials (id),
    issued_at         timestamptz NOT NULL DEFAULT now(),
    deprecated_at     timestamptz,
    revoked_at        timestamptz,
    last_seen_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, version)
);
CREATE UNIQUE INDEX user_credentials_active_key ON user_credentials (user_id) WHERE status = 1;

-- A missing row reads as a balance of 0 CNY.
CREATE TABLE user_balances (
    user_id             bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance_cents       bigint NOT NULL DEFAULT 0,
    currency            text NOT NULL DEFAULT 'CNY' CHECK (currency = upper(currency) AND length(currency) BETWEEN 3 AND 16),
    last_transaction_id bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE balance_transactions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entry_type          text NOT NULL CHECK (length(entry_type) BETWEEN 1 AND 32),
    amount_cents        bigint NOT NULL CHECK (amount_cents <> 0),
    currency            text NOT NULL DEFAULT 'CNY',
    balance_after_cents bigint NOT NULL,
    reference           text NOT NULL DEFAULT '',
    description         text NOT NULL DEFAULT '',
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX balance_transactions_user_idx ON balance_transactions (user_id, created_at DESC, id DESC);

-- Wrong current passwords on password change, counted over a sliding window.
CREATE TABLE account_password_failures (
    user_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_password_failures_user_idx ON account_password_failures (user_id, failed_at);
