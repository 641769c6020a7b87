-- Access control (issue 15): custom roles, the role version every api
-- replica checks its permission cache against, the audit log, and who a
-- job acts for.

-- Custom roles; the built-in ones (admin, designer, editor, operator,
-- viewer) live in code and cannot be stored here.
CREATE TABLE roles (
    name        TEXT        PRIMARY KEY,
    rules       JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ
);

-- One row: bumped in the transaction of every role change, so a replica
-- whose cache was filled under an older version resolves again.
CREATE TABLE role_version (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version    BIGINT  NOT NULL
);
INSERT INTO role_version (version) VALUES (1);

-- Every mutating api request, written in the transaction of the change it
-- records (a failed request gets its own row). user_id is the token's sub.
CREATE TABLE audit_log (
    id        BIGSERIAL   PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    user_id   BIGINT      NOT NULL,
    method    TEXT        NOT NULL,
    path      TEXT        NOT NULL,
    resource  TEXT        NOT NULL,
    status    INT         NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- Who a job acts for: created_by (already there) with these roles. NULL
-- roles = a system job (created outside the api, e.g. before this
-- migration): it is not restricted.
ALTER TABLE jobs ADD COLUMN creator_roles TEXT[];

-- A workflow's last editor, whose permissions its cron jobs act with.
ALTER TABLE workflows ADD COLUMN edited_by BIGINT NOT NULL DEFAULT 0,
                      ADD COLUMN editor_roles TEXT[];
