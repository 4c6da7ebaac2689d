DROP TABLE subscriptions;
DROP TABLE plan_billing_options;
DROP TABLE plan_bindings;
DROP TABLE plans;
