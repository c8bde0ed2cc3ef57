-- #region role
CREATE ROLE app_tenant NOLOGIN;
GRANT app_tenant TO app; -- the user the application connects as
-- #endregion role

-- #region rls
CREATE TABLE notes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'),
  body text NOT NULL
);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
-- NULLIF: on a connection another request used, a reset setting reads '' rather than NULL.
CREATE POLICY tenant_isolation ON notes
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''))
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), ''));
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO app_tenant;
-- #endregion rls
