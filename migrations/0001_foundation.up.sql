-- Foundation tables: users, refresh-token families and the site settings row.
-- Times are timestamptz; emails are stored normalized (trimmed, lower-case)
-- and unique case-insensitively.

CREATE TABLE users (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email                 text NOT NULL CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254),
    display_name          text NOT NULL DEFAULT '' CHECK (length(display_name) <= 128),
    password_hash         text NOT NULL,
    roles                 text[] NOT NULL DEFAULT ARRAY['user']::text[],
    status                smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3)), -- 1 active, 2 pending, 3 disabled
    email_verified_at     timestamptz,
    failed_login_attempts integer NOT NULL DEFAULT 0,
    locked_until          timestamptz,
    last_login_at         timestamptz,
    token_invalid_before  timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per issued refresh token. A family is the chain of tokens that
-- rotated from one sign-in; reuse of a used token revokes the whole family.
CREATE TABLE refresh_tokens (
    jti         uuid PRIMARY KEY,
    family_id   uuid NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    replaced_by uuid
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Singleton: the CHECK on id keeps it to one row.
CREATE TABLE site_settings (
    id                  smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    name                text NOT NULL DEFAULT '' CHECK (length(name) <= 128),
    logo_url            text NOT NULL DEFAULT '' CHECK (length(logo_url) <= 512),
    service_domain      text NOT NULL DEFAULT '' CHECK (length(service_domain) <= 512),
    subscription_domain text NOT NULL DEFAULT '' CHECK (length(subscription_domain) <= 512),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Lets every instance refresh its in-process copy when the settings change.
CREATE FUNCTION site_settings_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('znp_site_settings', NEW.id::text);
    RETURN NEW;
END;
$$;
CREATE TRIGGER site_settings_changed AFTER INSERT OR UPDATE ON site_settings
    FOR EACH ROW EXECUTE FUNCTION site_settings_notify();
