-- The namespace (one row per file or directory) and the single-use link records.
-- Times are integer microseconds since the Unix epoch, UTC; BINARY collation
-- orders the UTF-8 paths bytewise.

CREATE TABLE entries (
    path        TEXT NOT NULL PRIMARY KEY,
    parent      TEXT NOT NULL,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('file', 'directory')),
    size        INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
    mode        INTEGER NOT NULL,
    owner       TEXT NOT NULL,
    grp         TEXT NOT NULL,
    mtime       INTEGER NOT NULL,
    ctime       INTEGER NOT NULL,
    etag        TEXT,
    backend     TEXT NOT NULL,
    instance_id TEXT,
    object_key  TEXT
) WITHOUT ROWID;

CREATE INDEX entries_parent_idx ON entries (parent, path);
CREATE INDEX entries_object_key_idx ON entries (backend, instance_id) WHERE object_key IS NOT NULL;

CREATE TABLE links (
    token_id   TEXT NOT NULL PRIMARY KEY,
    path       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;

CREATE INDEX links_expires_at_idx ON links (expires_at);
