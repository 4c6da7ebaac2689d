-- Notifications for the download cache of every instance (src/download).
-- A download answered from memory runs no query, so every write that can
-- change a subscription file must reach each instance through NOTIFY
-- znp_subscriptions. A numeric payload names one subscription; any other
-- payload ("nodes:<id>", "templates:<id>") drops every cached file.
-- Traffic counting sends nothing here: used bytes in a cached answer may lag
-- by up to download.cache_ttl_s. Crossing the quota notifies, because it
-- blocks the subscription.

CREATE FUNCTION download_notify_subscription() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('znp_subscriptions', OLD.id::text);
        RETURN NULL;
    END IF;
    -- columns no file shows; any other column, also one added later, notifies
    IF (to_jsonb(NEW) - ARRAY['traffic_used_bytes', 'updated_at', 'last_refreshed_at', 'traffic_reset_on'])
       = (to_jsonb(OLD) - ARRAY['traffic_used_bytes', 'updated_at', 'last_refreshed_at', 'traffic_reset_on'])
       AND (NEW.traffic_total_bytes = 0
            OR (OLD.traffic_used_bytes < OLD.traffic_total_bytes)
               = (NEW.traffic_used_bytes < NEW.traffic_total_bytes)) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('znp_subscriptions', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_download_notify
    AFTER UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION download_notify_subscription();

-- Node columns a file shows: whether the node is served (DOWNLOAD_ENTRY_SCOPE
-- in src/download/internal.h leaves out deleted nodes and the statuses 3
-- maintenance and 4 disabled) and the name, region and country of the
-- template context. A move between 1 online and 2 offline, which the status
-- poller makes often, changes no file and sends nothing.
CREATE FUNCTION download_notify_node() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.deleted_at IS NOT DISTINCT FROM OLD.deleted_at
       AND (NEW.status IN (3, 4)) = (OLD.status IN (3, 4))
       AND NEW.name IS NOT DISTINCT FROM OLD.name
       AND NEW.region IS NOT DISTINCT FROM OLD.region
       AND NEW.country IS NOT DISTINCT FROM OLD.country THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('znp_subscriptions', 'nodes:' || CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END
$$;

CREATE TRIGGER nodes_download_notify
    AFTER UPDATE OR DELETE ON nodes
    FOR EACH ROW EXECUTE FUNCTION download_notify_node();

-- Templates: a published version, a new default or client type, or a
-- deletion changes which content a download renders. Saving a draft
-- (subscription_templates.content) changes no file and sends nothing.
CREATE FUNCTION download_notify_template() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_TABLE_NAME = 'subscription_templates' AND TG_OP = 'UPDATE' THEN
        IF NEW.is_default IS NOT DISTINCT FROM OLD.is_default
           AND NEW.client_type IS NOT DISTINCT FROM OLD.client_type
           AND NEW.name IS NOT DISTINCT FROM OLD.name THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_TABLE_NAME = 'subscription_template_versions' THEN
        PERFORM pg_notify('znp_subscriptions',
                          'templates:' || CASE WHEN TG_OP = 'DELETE' THEN OLD.template_id ELSE NEW.template_id END);
    ELSE
        PERFORM pg_notify('znp_subscriptions', 'templates:' || CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscription_templates_download_notify
    AFTER UPDATE OR DELETE ON subscription_templates
    FOR EACH ROW EXECUTE FUNCTION download_notify_template();
CREATE TRIGGER subscription_template_versions_download_notify
    AFTER INSERT OR UPDATE OR DELETE ON subscription_template_versions
    FOR EACH ROW EXECUTE FUNCTION download_notify_template();
