-- The seed's test table, written on the primary and read on the standby by `verify`.
CREATE TABLE IF NOT EXISTS public.replica_test (
  id         bigserial PRIMARY KEY,
  val        text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
