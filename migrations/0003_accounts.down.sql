DROP TABLE IF EXISTS invite_code_uses;
DROP TABLE IF EXISTS invite_codes;
DROP TABLE IF EXISTS auth_codes;
