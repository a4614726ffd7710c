-- A storage-node file's bytes live on several nodes: every entry records which, in
-- placement order (instance_id stays the first of them), as their ids joined by ','
-- (an instance id never holds a comma). Empty for S3 files and directories.
--
-- A row an older version inserts gets the default: it is read as held by its
-- instance_id alone.
ALTER TABLE entries ADD COLUMN replicas TEXT NOT NULL DEFAULT '';

UPDATE entries SET replicas = instance_id WHERE instance_id IS NOT NULL;
