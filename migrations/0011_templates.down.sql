DROP TABLE subscription_template_versions;
DROP TABLE subscription_templates;
