DROP TABLE account_password_failures;
DROP TABLE balance_transactions;
DROP TABLE user_balances;
DROP TABLE user_credentials;
ALTER TABLE users DROP COLUMN locale;
