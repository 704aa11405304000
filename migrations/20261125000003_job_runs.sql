-- Runs of cluster singleton jobs (history retention), for operators: which instance ran a job,
-- when, how far it got. `updated_at` advances with each step, so a run whose instance was
-- killed shows how far it got and when it was last alive. Portable between SQLite and
-- PostgreSQL like the init migration.

CREATE TABLE job_runs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT,
    affected BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX job_runs_job_started ON job_runs (job, started_at);

-- The retention job deletes by age.
CREATE INDEX messages_created_at ON messages (created_at);
