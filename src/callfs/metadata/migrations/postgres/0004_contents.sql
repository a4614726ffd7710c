-- Small files' bytes kept in the metadata store itself (backend.inline_max_bytes): one
-- row per object, keyed as objects on the storage nodes are. A file's content row is
-- inserted in the transaction that points its entry at it; these triggers remove it in
-- the transaction that deletes the entry or points it at another object, so no content
-- outlives its entry and none is left behind by a crash. Such an entry names no storage
-- node (instance_id NULL, replicas '{}'); a move rewrites the path only and keeps it.
CREATE TABLE contents (
    object_key text NOT NULL PRIMARY KEY,
    data       bytea NOT NULL
);

CREATE FUNCTION callfs_drop_content() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contents WHERE object_key = OLD.object_key;
    RETURN NULL;
END
$$;

CREATE TRIGGER entries_content_deleted AFTER DELETE ON entries
FOR EACH ROW WHEN (OLD.object_key IS NOT NULL AND OLD.instance_id IS NULL)
EXECUTE FUNCTION callfs_drop_content();

CREATE TRIGGER entries_content_replaced AFTER UPDATE OF object_key ON entries
FOR EACH ROW WHEN (OLD.object_key IS NOT NULL AND OLD.instance_id IS NULL
    AND OLD.object_key IS DISTINCT FROM NEW.object_key)
EXECUTE FUNCTION callfs_drop_content();
