-- Login users of the license ledger (docs/design.md §4).
--
-- Run once per database, after `ledger migrate up` has created the NOLOGIN
-- roles ledger_app and ledger_auditor, as a superuser (or as a user with
-- CREATEROLE that may grant those two roles; README.md):
--
--   psql -v ON_ERROR_STOP=1 --single-transaction -d ledger -f roles.sql
--   psql -d ledger -c '\password ledger_svc'
--   psql -d ledger -c '\password ledger_compliance'
--
-- It is idempotent: running it again changes nothing. It sets no password
-- (psql's \password sends only a SCRAM hash, which keeps the secret out of
-- this file, the shell history and the server log); until one is set, the
-- users cannot log in with a password.
--
-- If migrate ran with other role names (LEDGER_DB_APP_ROLE,
-- LEDGER_DB_AUDITOR_ROLE), replace ledger_app and ledger_auditor below.

DO $$
BEGIN
    -- Roles belong to the whole server, grants to one database: check that
    -- migrate up ran here, not only somewhere on this server. (Two IFs: SQL
    -- does not promise to evaluate OR from left to right.)
    IF to_regclass('license_audit') IS NULL
       OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_app')
       OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_auditor') THEN
        RAISE EXCEPTION 'database % is not migrated (no license_audit, ledger_app or ledger_auditor): run ledger migrate up first',
            current_database();
    END IF;
    IF NOT has_table_privilege('ledger_app', 'license_audit', 'INSERT')
       OR NOT has_table_privilege('ledger_auditor', 'license_audit', 'SELECT') THEN
        RAISE EXCEPTION 'ledger_app and ledger_auditor have no grants in database %: run ledger migrate up first',
            current_database();
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_svc') THEN
        CREATE ROLE ledger_svc LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_compliance') THEN
        CREATE ROLE ledger_compliance LOGIN;
    END IF;
END
$$;

-- ledger_svc: DATABASE_URL of every `ledger serve`. It only inherits
-- ledger_app (INSERT and SELECT on the audit trail, read/write on the read
-- model); `ledger serve` refuses to start as a user that could rewrite the
-- audit (a superuser, the tables' owner, or one with UPDATE, DELETE or
-- TRUNCATE on license_audit). Created as above it has no other attribute
-- (no SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS).
ALTER ROLE ledger_svc WITH LOGIN INHERIT;
GRANT ledger_app TO ledger_svc;

-- ledger_compliance: read-only queries, `ledger audit verify|export` with
-- DATABASE_URL, and optionally gatekeepers' DATABASE_URL. It only inherits
-- ledger_auditor (SELECT on the audit trail and the read model).
ALTER ROLE ledger_compliance WITH LOGIN INHERIT;
GRANT ledger_auditor TO ledger_compliance;
-- Read-only even for an ad-hoc query that tries to write somewhere else.
ALTER ROLE ledger_compliance SET default_transaction_read_only = on;

-- Both may connect to this database, even where CONNECT was revoked from
-- PUBLIC.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ledger_svc, ledger_compliance', current_database());
END
$$;
