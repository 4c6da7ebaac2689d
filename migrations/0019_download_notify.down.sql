DROP TRIGGER IF EXISTS subscription_template_versions_download_notify ON subscription_template_versions;
DROP TRIGGER IF EXISTS subscription_templates_download_notify ON subscription_templates;
DROP FUNCTION IF EXISTS download_notify_template();
DROP TRIGGER IF EXISTS nodes_download_notify ON nodes;
DROP FUNCTION IF EXISTS download_notify_node();
DROP TRIGGER IF EXISTS subscriptions_download_notify ON subscriptions;
DROP FUNCTION IF EXISTS download_notify_subscription();
