-- The seed's replication role. Its password is set from the environment
-- (PGRUNBOOK_REPLICATION_PASSWORD) by the entrypoint, never written in a file.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') THEN
    CREATE ROLE replicator WITH REPLICATION LOGIN;
  END IF;
END
$$;
