DROP TRIGGER IF EXISTS site_settings_changed ON site_settings;
DROP FUNCTION IF EXISTS site_settings_notify();
DROP TABLE IF EXISTS site_settings;
DROP TABLE IF EXISTS refresh_tokens;
DROP TABLE IF EXISTS users;
