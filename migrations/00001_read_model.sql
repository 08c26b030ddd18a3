-- The read model and the audit trail. Names and columns are contract:
-- compliance teams query these tables directly.

-- +goose Up
CREATE TABLE org_licenses (
    org_slug            text PRIMARY KEY,
    license_id          uuid,
    customer            text,
    tier                text,
    products            text[] NOT NULL DEFAULT '{}',
    features            text[] NOT NULL DEFAULT '{}',
    issued_at           timestamptz,
    not_before          timestamptz,
    expires_at          timestamptz,
    users_limit         int,
    grace_days          int,
    license_key         text,
    fingerprint         text,
    revoked             bool NOT NULL DEFAULT false,
    revoked_note        text,
    pending_license_id  uuid,
    pending_not_before  timestamptz,
    pending_license_key text,
    updated_at          timestamptz,
    last_seq            bigint NOT NULL
);

CREATE TABLE revoked_licenses (
    org_slug   text,
    license_id uuid,
    seq        bigint,
    PRIMARY KEY (org_slug, license_id)
);

CREATE TABLE license_audit (
    seq          bigint PRIMARY KEY,
    event_id     uuid UNIQUE,
    subject      text NOT NULL,
    org_slug     text,
    type         text NOT NULL,
    actor_kind   text,
    actor_id     text,
    occurred_at  timestamptz,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    envelope     jsonb,
    envelope_raw bytea NOT NULL,
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL
);
CREATE INDEX license_audit_org_seq ON license_audit (org_slug, seq);
CREATE INDEX license_audit_type_seq ON license_audit (type, seq);
CREATE INDEX license_audit_occurred ON license_audit (occurred_at);

CREATE TABLE projection_checkpoints (
    name           text PRIMARY KEY,
    last_seq       bigint NOT NULL DEFAULT 0,
    stream_created timestamptz,
    updated_at     timestamptz
);

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM license_audit) THEN
        RAISE EXCEPTION 'license_audit has rows: refusing to drop the audit trail';
    END IF;
END;
$$;
-- +goose StatementEnd
DROP TABLE projection_checkpoints;
DROP TABLE license_audit;
DROP TABLE revoked_licenses;
DROP TABLE org_licenses;
