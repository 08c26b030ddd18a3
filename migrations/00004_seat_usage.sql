-- Seats: an org's active users as its platform last reported them
-- (usage.reported), kept beside its license's users_limit. Both NULL until
-- the first report; a license removal leaves them (usage is the org's).
-- Rows written before this migration hold NULL: no usage was reported then.

-- +goose Up
ALTER TABLE org_licenses ADD COLUMN users_active int;
ALTER TABLE org_licenses ADD COLUMN users_reported_at timestamptz;

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM license_audit) THEN
        RAISE EXCEPTION 'license_audit has rows: refusing to drop the seat usage columns';
    END IF;
END;
$$;
-- +goose StatementEnd
ALTER TABLE org_licenses DROP COLUMN users_reported_at;
ALTER TABLE org_licenses DROP COLUMN users_active;
