-- Multi-factor authentication: TOTP seeds sealed with AES-256-GCM under the
-- master key (src/core/crypto.h), hashed single-use recovery codes, and the
-- ids of sign-in challenge tokens so each one succeeds once.

CREATE TABLE user_mfa (
    user_id            bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    enabled            boolean NOT NULL DEFAULT false,
    secret             bytea,       -- sealed seed of the enabled authenticator
    pending_secret     bytea,       -- sealed seed of an enrollment not yet confirmed
    pending_created_at timestamptz,
    confirmed_at       timestamptz,
    -- the last TOTP time step accepted; a code is accepted only for a later step
    last_used_step     bigint NOT NULL DEFAULT -1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT enabled OR (secret IS NOT NULL AND confirmed_at IS NOT NULL))
);

CREATE TABLE mfa_recovery_codes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  text NOT NULL CHECK (code_hash ~ '^[0-9a-f]{64}$'), -- HMAC-SHA256, hex
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, code_hash)
);

CREATE TABLE mfa_challenges (
    jti        uuid PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mfa_challenges_expires_at_idx ON mfa_challenges (expires_at);
