-- license_audit is append-only: no UPDATE, DELETE or TRUNCATE, whoever asks.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION license_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'license_audit is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER license_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON license_audit
    FOR EACH ROW EXECUTE FUNCTION license_audit_append_only();
CREATE TRIGGER license_audit_no_truncate
    BEFORE TRUNCATE ON license_audit
    FOR EACH STATEMENT EXECUTE FUNCTION license_audit_append_only();
-- ALWAYS: the triggers fire even under session_replication_role = replica,
-- which would otherwise let a superuser's session skip them.
ALTER TABLE license_audit ENABLE ALWAYS TRIGGER license_audit_no_update_delete;
ALTER TABLE license_audit ENABLE ALWAYS TRIGGER license_audit_no_truncate;

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM license_audit) THEN
        RAISE EXCEPTION 'license_audit has rows: refusing to remove its protection';
    END IF;
END;
$$;
-- +goose StatementEnd
DROP TRIGGER license_audit_no_truncate ON license_audit;
DROP TRIGGER license_audit_no_update_delete ON license_audit;
DROP FUNCTION license_audit_append_only();
