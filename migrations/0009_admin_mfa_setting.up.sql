-- Operators switch the admin MFA requirement at run time from the site
-- settings; the config key security.require_admin_mfa still forces it on.
ALTER TABLE site_settings ADD COLUMN require_admin_mfa boolean NOT NULL DEFAULT false;
