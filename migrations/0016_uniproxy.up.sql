-- The node-backend API (UniProxy): per-node backend tokens, the online IPs
-- node backends report, and the triggers that tell every instance when the
-- set of users a binding serves may have changed.

-- One backend token per node. Only the SHA-256 of the token is stored; the
-- token itself is shown once, when an admin rotates it.
CREATE TABLE node_backend_tokens (
    node_id     bigint PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz NOT NULL DEFAULT now()
);

-- Online IPs from POST .../alive, one row per (node, user, address). A row
-- counts while seen_at is within the alive TTL; older rows are ignored and
-- purged by later reports of the same node.
CREATE TABLE node_online_ips (
    node_id  bigint NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    user_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip       text NOT NULL CHECK (ip <> '' AND length(ip) <= 64),
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, user_id, ip)
);
CREATE INDEX node_online_ips_user_idx ON node_online_ips (user_id, seen_at);
CREATE INDEX node_online_ips_seen_idx ON node_online_ips (node_id, seen_at);

-- Token changes and node deletion reach the token map of every instance.
CREATE FUNCTION uniproxy_notify_token() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('znp_node_tokens', OLD.node_id::text);
    ELSE
        PERFORM pg_notify('znp_node_tokens', NEW.node_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER node_backend_tokens_notify
    AFTER INSERT OR UPDATE OR DELETE ON node_backend_tokens
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_token();

CREATE FUNCTION uniproxy_notify_node() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
        PERFORM pg_notify('znp_node_tokens', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER nodes_uniproxy_notify
    AFTER UPDATE ON nodes
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_node();

-- Eligibility notifications (channel znp_eligibility, payload
-- "<table>:<id>"). They fire on the writes that can change
-- binding_eligible_users or the identities in a user list. A traffic update
-- fires only when it crosses the quota, so ordinary traffic counting sends
-- nothing.
CREATE FUNCTION uniproxy_notify_eligibility() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    row_id text;
BEGIN
    IF TG_TABLE_NAME = 'subscriptions' AND TG_OP = 'UPDATE' THEN
        IF NEW.status IS NOT DISTINCT FROM OLD.status
           AND NEW.plan_id IS NOT DISTINCT FROM OLD.plan_id
           AND NEW.user_id IS NOT DISTINCT FROM OLD.user_id
           AND NEW.expires_at IS NOT DISTINCT FROM OLD.expires_at
           AND NEW.devices_limit IS NOT DISTINCT FROM OLD.devices_limit
           AND NEW.traffic_total_bytes IS NOT DISTINCT FROM OLD.traffic_total_bytes
           AND (NEW.traffic_total_bytes = 0
                OR (OLD.traffic_used_bytes < OLD.traffic_total_bytes)
                   = (NEW.traffic_used_bytes < NEW.traffic_total_bytes)) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_TABLE_NAME = 'users' AND TG_OP = 'UPDATE' THEN
        IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
            RETURN NULL;
        END IF;
    ELSIF TG_TABLE_NAME = 'protocol_bindings' AND TG_OP = 'UPDATE' THEN
        -- sync bookkeeping changes on every push and heartbeat and changes no list or file
        IF (to_jsonb(NEW) - ARRAY['sync_status', 'last_synced_at', 'last_sync_error', 'last_heartbeat_at', 'updated_at'])
           = (to_jsonb(OLD) - ARRAY['sync_status', 'last_synced_at', 'last_sync_error', 'last_heartbeat_at', 'updated_at']) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_TABLE_NAME = 'user_credentials' AND TG_OP = 'INSERT' THEN
        -- a user's first credential is made while a list or file is built, so nothing cached holds another one
        -- (a nested IF, because PL/pgSQL may evaluate NEW.rotated_from_id for rows of other tables)
        IF NEW.rotated_from_id IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;

    IF TG_TABLE_NAME = 'plan_bindings' THEN
        row_id := CASE WHEN TG_OP = 'DELETE' THEN OLD.binding_id ELSE NEW.binding_id END::text;
    ELSIF TG_TABLE_NAME = 'user_credentials' THEN
        row_id := CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END::text;
    ELSE
        row_id := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END::text;
    END IF;
    PERFORM pg_notify('znp_eligibility', TG_TABLE_NAME || ':' || row_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_eligibility_notify
    AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_eligibility();
CREATE TRIGGER users_eligibility_notify
    AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_eligibility();
CREATE TRIGGER plan_bindings_eligibility_notify
    AFTER INSERT OR UPDATE OR DELETE ON plan_bindings
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_eligibility();
CREATE TRIGGER protocol_bindings_eligibility_notify
    AFTER INSERT OR UPDATE OR DELETE ON protocol_bindings
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_eligibility();
CREATE TRIGGER protocol_entries_eligibility_notify
    AFTER INSERT OR UPDATE OR DELETE ON protocol_entries
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_eligibility();
CREATE TRIGGER user_credentials_eligibility_notify
    AFTER INSERT OR UPDATE OR DELETE ON user_credentials
    FOR EACH ROW EXECUTE FUNCTION uniproxy_notify_eligibility();
