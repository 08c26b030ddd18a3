-- The Merkle tree over the audit trail (RFC 6962) and its signed
-- checkpoints.
--
-- license_audit.tree_hashes: the hashes of the perfect subtrees a record
-- completes (its leaf hash, then one per level it completes), written with
-- the record. Records written before this migration have none: the ledger
-- computes theirs once and keeps them in license_audit_tree, so neither
-- table is ever updated. projection_checkpoints.tree_size is how many
-- records, from seq 1, have tree hashes in either place.
--
-- audit_checkpoints: every checkpoint the install signed (C2SP
-- tlog-checkpoint in a signed note), kept so that consistency between any
-- two can be proven. All three are append-only, as license_audit is.

-- +goose Up
ALTER TABLE license_audit ADD COLUMN tree_hashes bytea;

CREATE TABLE license_audit_tree (
    seq         bigint PRIMARY KEY,
    tree_hashes bytea NOT NULL
);

CREATE TABLE audit_checkpoints (
    tree_size bigint NOT NULL,
    root_hash bytea NOT NULL,
    note      text NOT NULL,
    signed_at timestamptz NOT NULL,
    PRIMARY KEY (tree_size, root_hash)
);
CREATE INDEX audit_checkpoints_signed ON audit_checkpoints (signed_at);

ALTER TABLE projection_checkpoints ADD COLUMN tree_size bigint NOT NULL DEFAULT 0;

CREATE TRIGGER license_audit_tree_no_update_delete
    BEFORE UPDATE OR DELETE ON license_audit_tree
    FOR EACH ROW EXECUTE FUNCTION license_audit_append_only();
CREATE TRIGGER license_audit_tree_no_truncate
    BEFORE TRUNCATE ON license_audit_tree
    FOR EACH STATEMENT EXECUTE FUNCTION license_audit_append_only();
ALTER TABLE license_audit_tree ENABLE ALWAYS TRIGGER license_audit_tree_no_update_delete;
ALTER TABLE license_audit_tree ENABLE ALWAYS TRIGGER license_audit_tree_no_truncate;

CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION license_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION license_audit_append_only();
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_update_delete;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_truncate;

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM license_audit) OR EXISTS (SELECT 1 FROM audit_checkpoints) THEN
        RAISE EXCEPTION 'license_audit has rows: refusing to drop its Merkle tree and signed checkpoints';
    END IF;
END;
$$;
-- +goose StatementEnd
ALTER TABLE projection_checkpoints DROP COLUMN tree_size;
DROP TABLE audit_checkpoints;
DROP TABLE license_audit_tree;
ALTER TABLE license_audit DROP COLUMN tree_hashes;
