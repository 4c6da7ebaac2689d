-- Failed sign-ins per client IP in a fixed window, shared by every instance.
-- A row whose window has passed counts as empty: the next failure restarts
-- it, and rows of old windows are deleted now and then by the sign-in code.
CREATE TABLE login_ip_failures (
    ip           text        PRIMARY KEY,
    window_start timestamptz NOT NULL DEFAULT now(),
    failures     integer     NOT NULL DEFAULT 0 CHECK (failures >= 0)
);

CREATE INDEX login_ip_failures_window_start ON login_ip_failures (window_start);
