DELETE FROM ip_failures WHERE scope <> 'login';
ALTER TABLE ip_failures DROP CONSTRAINT ip_failures_pkey;
ALTER TABLE ip_failures DROP COLUMN scope;
ALTER TABLE ip_failures ADD CONSTRAINT login_ip_failures_pkey PRIMARY KEY (ip);
ALTER INDEX ip_failures_window_start RENAME TO login_ip_failures_window_start;
ALTER TABLE ip_failures RENAME TO login_ip_failures;
