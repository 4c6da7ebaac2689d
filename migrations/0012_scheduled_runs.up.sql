-- Scheduled jobs: when each one last ran, so a restart does not run it early
-- and several instances agree on the next run. The row is updated while the
-- job's advisory lock is held.
CREATE TABLE scheduled_runs (
    name        text PRIMARY KEY CHECK (name <> ''),
    last_run_at timestamptz NOT NULL
);

-- Subscription status 4: the traffic quota is used up (traffic_used_bytes >=
-- traffic_total_bytes with a total above 0). The subscriptions.expire job sets
-- it and moves the subscription back to 1 (active) when the quota is raised
-- or the usage reset. Statuses are now 1 active, 2 disabled, 3 expired,
-- 4 quota used up.
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check CHECK (status IN (1, 2, 3, 4));
