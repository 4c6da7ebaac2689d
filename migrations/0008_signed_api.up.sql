-- The security settings of the signed third-party API (a singleton, id 1)
-- and the nonces it has accepted. The secret is stored sealed with
-- security.master_key (base64 of version || nonce || ciphertext || tag).
CREATE TABLE security_settings (
    id                      smallint PRIMARY KEY CHECK (id = 1),
    third_party_api_enabled boolean NOT NULL DEFAULT false,
    api_key                 text NOT NULL CHECK (length(api_key) BETWEEN 8 AND 128),
    api_secret_sealed       text NOT NULL,
    api_secret_last4        text NOT NULL,
    encryption_algorithm    text NOT NULL DEFAULT 'aes-256-gcm' CHECK (encryption_algorithm = 'aes-256-gcm'),
    nonce_ttl_seconds       integer NOT NULL DEFAULT 300 CHECK (nonce_ttl_seconds BETWEEN 60 AND 3600),
    signed_route_groups     text[] NOT NULL DEFAULT '{}'
                            CHECK (signed_route_groups <@ ARRAY['user', 'admin', 'public']::text[]),
    created_at              timestamptz NOT NULL DEFAULT date_trunc('second', now()),
    updated_at              timestamptz NOT NULL DEFAULT date_trunc('second', now())
);

-- Every instance reloads its in-process copy on this channel (the watcher listens to it).
CREATE FUNCTION security_settings_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('znp_site_settings', 'security');
    RETURN NEW;
END;
$$;
CREATE TRIGGER security_settings_changed AFTER INSERT OR UPDATE ON security_settings
    FOR EACH ROW EXECUTE FUNCTION security_settings_notify();

-- A nonce is accepted once per API key until it expires; the primary key
-- makes a replay fail on every instance sharing the database.
CREATE TABLE api_nonces (
    api_key    text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (api_key, nonce)
);
CREATE INDEX api_nonces_expires_at ON api_nonces (expires_at);
