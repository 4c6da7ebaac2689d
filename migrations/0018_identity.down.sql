DROP TABLE traffic_reset_logs;
ALTER TABLE subscriptions DROP COLUMN traffic_reset_on;
COMMENT ON COLUMN user_credentials.secret_sealed IS NULL;
