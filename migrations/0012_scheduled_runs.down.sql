UPDATE subscriptions SET status = 1 WHERE status = 4;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check CHECK (status IN (1, 2, 3));
DROP TABLE scheduled_runs;
