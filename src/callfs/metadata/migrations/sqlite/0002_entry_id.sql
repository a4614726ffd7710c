-- Every entry gets an identity that a delete and re-create at the same path does not
-- keep (32 hex digits, as callfs.entry.new_entry_id draws them), and every link
-- records the file entry it was issued for.
--
-- SQLite cannot add a NOT NULL column without a constant default, so the table is
-- rebuilt; the default draws each existing row its own id as it is copied.
CREATE TABLE entries_new (
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
    object_key  TEXT,
    entry_id    TEXT NOT NULL DEFAULT (lower(hex(randomblob(16))))
) WITHOUT ROWID;

INSERT INTO entries_new (path, parent, name, type, size, mode, owner, grp, mtime, ctime,
                         etag, backend, instance_id, object_key)
SELECT path, parent, name, type, size, mode, owner, grp, mtime, ctime,
       etag, backend, instance_id, object_key
FROM entries;

DROP TABLE entries;

ALTER TABLE entries_new RENAME TO entries;

CREATE INDEX entries_parent_idx ON entries (parent, path);
CREATE INDEX entries_object_key_idx ON entries (backend, instance_id) WHERE object_key IS NOT NULL;

-- Links written from now on name their entry. Links issued before pin to the file at
-- their path now; one whose path holds no file gets '', which names no entry, so it
-- stays dead whatever is created there later.
ALTER TABLE links ADD COLUMN entry_id TEXT;

UPDATE links SET entry_id = coalesce(
    (SELECT e.entry_id FROM entries e WHERE e.path = links.path AND e.type = 'file'), ''
);
