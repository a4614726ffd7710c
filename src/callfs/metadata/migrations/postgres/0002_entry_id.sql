-- Every entry gets an identity that a delete and re-create at the same path does not
-- keep (32 hex digits, as callfs.entry.new_entry_id draws them), and every link
-- records the file entry it was issued for.
--
-- The volatile default gives each existing row its own id (PostgreSQL rewrites the
-- table once to do it) and fills the column for replicas still running the previous
-- version during a rolling upgrade, whose inserts do not name it.
ALTER TABLE entries
    ADD COLUMN entry_id text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', '');

-- Links written from now on name their entry. Links issued before pin to the file at
-- their path now; one whose path holds no file gets '', which names no entry, so it
-- stays dead whatever is created there later. NULL remains only for links written by
-- a previous-version replica during the upgrade: those still follow their path.
ALTER TABLE links ADD COLUMN entry_id text;

UPDATE links SET entry_id = coalesce(
    (SELECT e.entry_id FROM entries e WHERE e.path = links.path AND e.type = 'file'), ''
);
