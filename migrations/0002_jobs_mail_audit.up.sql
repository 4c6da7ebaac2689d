-- The job queue and the audit log.

-- One row per background job. Runners claim queued rows whose run_at has
-- passed with FOR UPDATE SKIP LOCKED; a failed job goes back to queued with a
-- later run_at until attempts reaches max_attempts, then it is dead.
CREATE TABLE jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status       text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer NOT NULL DEFAULT 8 CHECK (max_attempts >= 1),
    run_at       timestamptz NOT NULL DEFAULT now(),
    locked_by    text,
    locked_at    timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_status_run_at_idx ON jobs (status, run_at);

-- Wakes the runners of every instance when a job is queued.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('znp_jobs', NEW.kind);
    RETURN NEW;
END;
$$;
CREATE TRIGGER jobs_queued AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_notify();

-- Append-only record of admin writes and security events. diff never holds
-- secrets (password hashes, codes, tokens, TOTP seeds).
CREATE TABLE audit_logs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id      bigint,
    actor_email   text,
    actor_roles   text[] NOT NULL DEFAULT ARRAY[]::text[],
    action        text NOT NULL CHECK (length(action) BETWEEN 1 AND 128),
    resource_type text,
    resource_id   text,
    source_ip     text NOT NULL DEFAULT '',
    user_agent    text CHECK (length(user_agent) <= 256),
    request_id    text,
    diff          jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_logs_created_at_idx ON audit_logs (created_at, id);
CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_id, created_at);
CREATE INDEX audit_logs_action_idx ON audit_logs (action, created_at);
CREATE INDEX audit_logs_resource_idx ON audit_logs (resource_type, resource_id, created_at);
