package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/ledger"
)

// The verifiable audit: signed checkpoints of the trail's Merkle tree and
// proofs against them, for auditors and operators, and org admins for
// their orgs' records. A checkpoint and a consistency proof reveal the
// trail's size and nothing of any record; an inclusion proof is given for
// a record of the caller's orgs only.

// checkpointsReady answers 503 when the store keeps no tree.
func (s *Server) checkpointsReady(w http.ResponseWriter, r *http.Request) bool {
	if !s.auditAllowed(w, principal(r.Context()), auth.RoleAuditor, auth.RoleOperator, auth.RoleOrgAdmin) {
		return false
	}
	if s.cfg.Tree == nil || s.cfg.Checkpoints == nil {
		writeError(w, http.StatusServiceUnavailable, ledger.CodeUnavailable, "this ledger signs no checkpoints")
		return false
	}
	return true
}

// getCheckpoint is GET /api/audit/checkpoint[?size=S]: the latest signed
// checkpoint (or the one of size S), exactly the note's bytes.
func (s *Server) getCheckpoint(w http.ResponseWriter, r *http.Request) {
	if !s.checkpointsReady(w, r) {
		return
	}
	size, ok := s.checkpointSize(w, r, "size")
	if !ok {
		return
	}
	cp, err := s.cfg.Checkpoints.BySize(r.Context(), size)
	if err != nil {
		s.auditUnavailable(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(cp.Note)
}

// getCheckpointKey is GET /api/audit/checkpoint/key: the verifier key of
// the checkpoints, in the note format, one line.
func (s *Server) getCheckpointKey(w http.ResponseWriter, r *http.Request) {
	if !s.checkpointsReady(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(s.cfg.CheckpointKey + "\n"))
}

// sizeParam reads a tree size parameter: (0, false, nil) when absent.
func sizeParam(r *http.Request, name string) (uint64, bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > 1<<62 {
		return 0, true, fmt.Errorf("%s must be a non-negative integer", name)
	}
	return n, true, nil
}

// checkpointSize returns the size of the checkpoint a proof is asked
// against: the latest, or size when given, which must be one signed.
func (s *Server) checkpointSize(w http.ResponseWriter, r *http.Request, name string) (uint64, bool) {
	size, given, err := sizeParam(r, name)
	if err != nil {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, err.Error())
		return 0, false
	}
	latest, err := s.cfg.Checkpoints.Latest(r.Context())
	switch {
	case errors.Is(err, audit.ErrNoCheckpoint):
		writeError(w, http.StatusNotFound, ledger.CodeNotFound, "no checkpoint signed yet")
		return 0, false
	case err != nil:
		s.auditUnavailable(w, err)
		return 0, false
	case !given:
		return latest.Size, true
	}
	if _, err := s.cfg.Checkpoints.BySize(r.Context(), size); errors.Is(err, audit.ErrNoCheckpoint) {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest,
			fmt.Sprintf("%s=%d: no checkpoint of that size was signed (the latest is of size %d)", name, size, latest.Size))
		return 0, false
	} else if err != nil {
		s.auditUnavailable(w, err)
		return 0, false
	}
	return size, true
}

// provableRecord reads and checks ?seq=N[&size=S] of an inclusion proof
// or a bundle: a record the caller may read, in a signed checkpoint's tree
// (the latest when size is absent). Otherwise it answers, and ok is false.
func (s *Server) provableRecord(w http.ResponseWriter, r *http.Request) (seq, size uint64, ok bool) {
	if !s.checkpointsReady(w, r) {
		return 0, 0, false
	}
	seq, given, err := sizeParam(r, "seq")
	if err != nil || !given || seq == 0 {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, "seq must be a record's sequence number (from 1)")
		return 0, 0, false
	}
	if size, ok = s.checkpointSize(w, r, "size"); !ok {
		return 0, 0, false
	}
	if seq > size {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, fmt.Sprintf("seq %d is not in the tree of size %d", seq, size))
		return 0, 0, false
	}
	return seq, size, s.recordInScope(w, r, seq)
}

// getInclusionProof is GET /api/audit/proof/inclusion?seq=N[&size=S].
func (s *Server) getInclusionProof(w http.ResponseWriter, r *http.Request) {
	seq, size, ok := s.provableRecord(w, r)
	if !ok {
		return
	}
	hashes, err := audit.InclusionProof(r.Context(), s.cfg.Tree, seq, size)
	if err != nil {
		s.proofFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, audit.InclusionJSON{Seq: seq, LeafIndex: seq - 1, TreeSize: size, Hashes: hashes})
}

// recordInScope answers 403 unless the caller may read record seq: a
// caller scoped to some orgs is given proofs of their records only.
func (s *Server) recordInScope(w http.ResponseWriter, r *http.Request, seq uint64) bool {
	scope := auditScope(principal(r.Context()))
	if scope == nil {
		return true
	}
	var org string
	err := s.cfg.Audit.Scan(r.Context(), audit.Query{After: seq - 1, Limit: 1}, func(rec *audit.Record) error {
		if rec.Seq == seq {
			org = rec.Org
		}
		return nil
	})
	if err != nil {
		s.auditUnavailable(w, err)
		return false
	}
	if !slices.Contains(scope, org) {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "this token may not read that record")
		return false
	}
	return true
}

// getProofBundle is GET /api/audit/proof/record?seq=N[&size=S]: the record
// with its inclusion proof and the checkpoint it is against, in one JSON
// document that `ledger audit verify-proof` checks offline.
func (s *Server) getProofBundle(w http.ResponseWriter, r *http.Request) {
	seq, size, ok := s.provableRecord(w, r)
	if !ok {
		return
	}
	b, err := audit.BuildBundle(r.Context(), s.cfg.Audit, s.cfg.Tree, s.cfg.Checkpoints, seq, size)
	if err != nil {
		s.proofFailed(w, err)
		return
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="audit-record-%d-proof.json"`, seq))
	writeJSON(w, http.StatusOK, b)
}

// getConsistencyProof is GET /api/audit/proof/consistency?from=A[&to=B]:
// both sizes of signed checkpoints (to defaults to the latest); from 0 is
// the empty tree.
func (s *Server) getConsistencyProof(w http.ResponseWriter, r *http.Request) {
	if !s.checkpointsReady(w, r) {
		return
	}
	from, given, err := sizeParam(r, "from")
	if err != nil || !given {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, "from must be the size of an earlier checkpoint")
		return
	}
	to, ok := s.checkpointSize(w, r, "to")
	if !ok {
		return
	}
	if from > to {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, fmt.Sprintf("from %d is beyond to %d", from, to))
		return
	}
	if from > 0 {
		if _, err := s.cfg.Checkpoints.BySize(r.Context(), from); errors.Is(err, audit.ErrNoCheckpoint) {
			writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, fmt.Sprintf("from=%d: no checkpoint of that size was signed", from))
			return
		} else if err != nil {
			s.auditUnavailable(w, err)
			return
		}
	}
	hashes, err := audit.ConsistencyProof(r.Context(), s.cfg.Tree, from, to)
	if err != nil {
		s.proofFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, audit.ConsistencyJSON{From: from, To: to, Hashes: hashes})
}

// proofFailed answers a proof that could not be built: 409 when the trail
// no longer holds the checkpoint's tree (a stream recreated since it was
// signed, or a read model rebuilt shorter), else the store is unavailable.
func (s *Server) proofFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, audit.ErrTreeSize) {
		writeError(w, http.StatusConflict, ledger.CodeConflict,
			"the trail no longer holds the records of that checkpoint (the stream was recreated, or the read model rebuilt, since it was signed)")
		return
	}
	s.auditUnavailable(w, err)
}
