-- Marks which one-time seeds (e.g. `znp serve --demo`) have run, so a
-- restart or a second instance never seeds twice.
CREATE TABLE znp_seeds (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
