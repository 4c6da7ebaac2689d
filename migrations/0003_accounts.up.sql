-- Registration: mailed one-time codes and invite codes.

-- One row per issued code. Only the newest row of a (purpose, email) can be
-- consumed. The rows also count the send limits (cooldown, hourly caps per
-- address and per client IP), so they hold across instances.
CREATE TABLE auth_codes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purpose     text NOT NULL CHECK (purpose IN ('verify', 'reset', 'email_change')),
    email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    code_hash   text NOT NULL,          -- hex HMAC-SHA-256, never the code
    created_ip  text NOT NULL DEFAULT '',
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz,            -- used, or burnt by too many wrong tries
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_codes_address_idx ON auth_codes (purpose, email, id);
CREATE INDEX auth_codes_ip_idx ON auth_codes (created_ip, created_at);

-- Invite codes for registration.mode invite_only. The code is kept as the
-- SHA-256 of its lower-case form, so lookups ignore letter case.
CREATE TABLE invite_codes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_hash   text NOT NULL UNIQUE,
    code_hint   text NOT NULL DEFAULT '',
    max_uses    integer NOT NULL CHECK (max_uses >= 1),
    used_count  integer NOT NULL DEFAULT 0 CHECK (used_count >= 0 AND used_count <= max_uses),
    expires_at  timestamptz,
    created_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE invite_code_uses (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invite_code_id bigint NOT NULL REFERENCES invite_codes (id) ON DELETE CASCADE,
    user_id        bigint NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    used_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invite_code_uses_code_idx ON invite_code_uses (invite_code_id);
