-- Failed attempts per client IP and scope in a fixed window, shared by every
-- instance: 'login' for sign-ins (formerly login_ip_failures) and
-- 'callback' for kernel callbacks with wrong webhook credentials.
ALTER TABLE login_ip_failures RENAME TO ip_failures;
ALTER INDEX login_ip_failures_window_start RENAME TO ip_failures_window_start;
ALTER TABLE ip_failures ADD COLUMN scope text NOT NULL DEFAULT 'login' CHECK (scope IN ('login', 'callback'));
ALTER TABLE ip_failures ALTER COLUMN scope DROP DEFAULT;
ALTER TABLE ip_failures DROP CONSTRAINT login_ip_failures_pkey;
ALTER TABLE ip_failures ADD PRIMARY KEY (scope, ip);
