-- The CRM data model: modules (typed schemas), their records, pages and charts.
-- IDs are BIGINT identities; the API writes them as decimal strings.

CREATE TABLE modules (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT        NOT NULL,
    meta        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    -- The ordered field list, as the API shows it: [{name, kind, label, ...}].
    fields      JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ,
    deleted_at  TIMESTAMPTZ
);
-- Two live modules may not share a name (case-insensitively).
CREATE UNIQUE INDEX modules_live_name ON modules (lower(name)) WHERE deleted_at IS NULL;

-- Partitioned by module: each module's records live in their own partition
-- (records_m<ID>, created with the module), so a module's per-field indexes
-- cover only its rows and are built without touching other modules.
CREATE TABLE records (
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    module_id   BIGINT      NOT NULL REFERENCES modules (id),
    user_id     BIGINT      NOT NULL,
    -- One JSON object per record, {fieldName: value}, so a read needs no join.
    "values"    JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ,
    deleted_at  TIMESTAMPTZ,
    PRIMARY KEY (module_id, id)
) PARTITION BY LIST (module_id);
-- Listing a module's live records newest first is the default query.
CREATE INDEX records_module_live ON records (module_id, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE pages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL is the root; the API shows it as selfID "0".
    parent_id   BIGINT      REFERENCES pages (id) ON DELETE CASCADE,
    -- Set on a module's record page; at most one per module.
    module_id   BIGINT      REFERENCES modules (id),
    title       TEXT        NOT NULL,
    description TEXT        NOT NULL DEFAULT '',
    visible     BOOLEAN     NOT NULL DEFAULT false,
    blocks      JSONB       NOT NULL DEFAULT '[]'::jsonb,
    weight      INTEGER     NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX pages_one_record_page_per_module ON pages (module_id) WHERE module_id IS NOT NULL;
CREATE INDEX pages_by_parent ON pages (parent_id, weight, id);

CREATE TABLE charts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT        NOT NULL,
    config      JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ
);

-- Typed accessors over record values, used by the query language. They are
-- IMMUTABLE so expression indexes can be built on them; values are validated
-- and normalised on write (numbers as JSON numbers, date-times as epoch seconds,
-- IDs as decimal strings), and anything else reads as NULL rather
-- than raising, so a stale value can never make a query fail.
CREATE FUNCTION crust_num(v JSONB) RETURNS NUMERIC
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN v::numeric END $$;

CREATE FUNCTION crust_bool(v JSONB) RETURNS BOOLEAN
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'boolean' THEN v::boolean END $$;

CREATE FUNCTION crust_text(v JSONB) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END $$;

CREATE FUNCTION crust_id(v JSONB) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ '^[0-9]{1,18}$'
                      THEN (v #>> '{}')::bigint END $$;

-- Date-times are stored as epoch seconds (a JSON number), so reading one is
-- a numeric cast, not a text parse: reports over millions of rows depend on
-- it. The API shows them as RFC 3339 strings.
CREATE FUNCTION crust_ts(v JSONB) RETURNS TIMESTAMPTZ
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN to_timestamp(v::float8) END $$;
