ALTER TABLE site_settings DROP COLUMN IF EXISTS require_admin_mfa;
