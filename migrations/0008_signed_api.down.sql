DROP TABLE IF EXISTS api_nonces;
DROP TRIGGER IF EXISTS security_settings_changed ON security_settings;
DROP FUNCTION IF EXISTS security_settings_notify();
DROP TABLE IF EXISTS security_settings;
