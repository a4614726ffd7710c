-- A storage-node file's bytes live on several nodes: every entry records which, in
-- placement order (instance_id stays the first of them). Empty for S3 files and
-- directories.
--
-- The constant default makes adding the column a catalog change only, and fills it
-- for replicas still running the previous version during a rolling upgrade, whose
-- inserts do not name it; such a row is read as held by its instance_id alone.
ALTER TABLE entries ADD COLUMN replicas text[] NOT NULL DEFAULT '{}';

UPDATE entries SET replicas = ARRAY[instance_id] WHERE instance_id IS NOT NULL;

-- The reconciler asks which keys a node holds: its first replica through
-- entries_object_key_idx, the others through this one.
CREATE INDEX entries_replicas_idx ON entries USING gin (replicas) WHERE object_key IS NOT NULL;
