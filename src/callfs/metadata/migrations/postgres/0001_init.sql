-- The namespace (one row per file or directory) and the single-use link records.
-- Paths use the "C" collation so ordering and range scans are bytewise.

CREATE TABLE entries (
    path        text COLLATE "C" PRIMARY KEY,
    parent      text COLLATE "C" NOT NULL,
    name        text NOT NULL,
    type        text NOT NULL CHECK (type IN ('file', 'directory')),
    size        bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    mode        integer NOT NULL,
    owner       text NOT NULL,
    grp         text NOT NULL,
    mtime       timestamptz NOT NULL,
    ctime       timestamptz NOT NULL,
    etag        text,
    backend     text NOT NULL,
    instance_id text,
    object_key  text
);

CREATE INDEX entries_parent_idx ON entries (parent, path);
CREATE INDEX entries_object_key_idx ON entries (backend, instance_id) WHERE object_key IS NOT NULL;

CREATE TABLE links (
    token_id   text PRIMARY KEY,
    path       text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX links_expires_at_idx ON links (expires_at);
