-- Identity credentials in the reference panel's format, and traffic reset
-- schedules.
--
-- user_credentials.secret_sealed now holds "<nonce>:<ciphertext>", both
-- unpadded standard base64: the seed sealed with AES-256-GCM under a per-user
-- key derived from security.master_key (src/identity/identity.h), and key_id
-- is the first 4 bytes of SHA-256(master key text) in hex. Rows written
-- earlier (no ':') hold the seed sealed by src/core/crypto.h under the decoded
-- master key. SQL cannot re-encrypt, so those rows are rewritten by the
-- scheduled job identity.upgrade and by `znp tools rotate-master-key`; both
-- keep the seed, so derived passwords do not change. Until then the old
-- format still opens.
COMMENT ON COLUMN user_credentials.secret_sealed IS
    '<nonce>:<ciphertext> (unpadded base64, AES-256-GCM under a per-user key); older rows: core/crypto base64';

-- The panel-time-zone date of the reset period the last traffic reset was
-- for; NULL until the first reset, when the purchase date (created_at) is
-- the start of the first period.
ALTER TABLE subscriptions ADD COLUMN traffic_reset_on date;

-- One row per traffic reset. The unique key makes a reset happen once per
-- period even when two passes overlap.
CREATE TABLE traffic_reset_logs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id    bigint NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    user_id            bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id            bigint NOT NULL,
    schedule           text NOT NULL
        CHECK (schedule IN ('first_of_month', 'monthly_on_purchase_day', 'yearly')),
    reset_on           date NOT NULL,   -- the scheduled date in the panel time zone
    used_bytes_before  bigint NOT NULL CHECK (used_bytes_before >= 0),
    status_before      smallint NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, reset_on)
);
CREATE INDEX traffic_reset_logs_user_idx ON traffic_reset_logs (user_id, created_at DESC);
