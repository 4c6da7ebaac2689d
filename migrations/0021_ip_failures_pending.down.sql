ALTER TABLE ip_failures DROP COLUMN pending;
