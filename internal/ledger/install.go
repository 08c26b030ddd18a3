package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// InstallSource says where the install-time license comes from: LICENSE_FILE
// (a path, either form), LICENSE_KEY (the compact key itself), else
// $DATA_DIR/license.json or $DATA_DIR/license.key.
type InstallSource struct {
	File    string // LICENSE_FILE
	Key     string // LICENSE_KEY
	DataDir string
}

// Read returns the license bytes and a description of where they came
// from; nil bytes when no install license is configured.
func (src InstallSource) Read() ([]byte, string, error) {
	switch {
	case src.File != "" && src.Key != "":
		return nil, "", errors.New("LICENSE_FILE and LICENSE_KEY are both set: keep one")
	case src.Key != "":
		return []byte(src.Key), "LICENSE_KEY", nil
	case src.File != "":
		b, err := readLimited(src.File)
		return b, src.File, err
	}
	jsonPath, keyPath := filepath.Join(src.DataDir, "license.json"), filepath.Join(src.DataDir, "license.key")
	jb, jerr := readLimited(jsonPath)
	kb, kerr := readLimited(keyPath)
	for _, err := range []error{jerr, kerr} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	switch {
	case jerr == nil && kerr == nil:
		return nil, "", fmt.Errorf("both %s and %s exist: keep one", jsonPath, keyPath)
	case jerr == nil:
		return jb, jsonPath, nil
	case kerr == nil:
		return kb, keyPath, nil
	}
	return nil, "", nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, license.MaxInputSize+1))
}

// ImportInstallLicense appends the install-time license to _instance when
// it differs from every license _instance ever held through an upload and
// passes every upload rule (source "install"). A license that fails is
// logged and appends nothing, not even a rejection: the file is the
// operator's, re-read at every start. Restarts never append twice.
func (s *Service) ImportInstallLicense(ctx context.Context, src InstallSource) error {
	body, where, err := src.Read()
	if err != nil || body == nil {
		return err
	}
	log := s.cfg.Logger.With("install_license", where)
	lic, _ := license.Decode(body)
	if lic != nil {
		seen, err := s.everUploaded(ctx, license.InstanceOrg, lic.Fingerprint)
		if err != nil {
			return err
		}
		if seen {
			log.Debug("install license already imported", "fingerprint", lic.Fingerprint)
			return nil
		}
	}
	res, err := s.upload(ctx, Upload{Org: license.InstanceOrg, Body: body, Source: events.SourceInstall,
		Actor: events.Actor{Kind: events.ActorInstall, ID: filepath.Base(where)}, noAudit: true})
	s.count("import", res, err)
	var e *Error
	if errors.As(err, &e) {
		log.Error("install license not imported", "code", e.Code, "reason", e.Message)
		return nil
	}
	if err != nil {
		return err
	}
	if res.Appended {
		log.Info("install license imported", "license_id", *res.Report.LicenseID, "seq", res.Seq)
		if err := s.latch(ctx); err != nil {
			log.Error("auto enforcement not latched", "err", err)
		}
	}
	return nil
}

// everUploaded reports whether org's subject holds an upload of fingerprint.
func (s *Service) everUploaded(ctx context.Context, org, fingerprint string) (bool, error) {
	subject := events.OrgSubject(org)
	head, err := s.store.Head(ctx, subject)
	if err != nil || head == 0 {
		return false, err
	}
	found := errors.New("found")
	err = s.store.ReadSubject(ctx, subject, 0, head, func(m *events.Message) error {
		var d events.Uploaded
		if m.Type() == events.TypeUploaded && m.Envelope.DecodeData(&d) == nil && d.Fingerprint == fingerprint {
			return found
		}
		return nil
	})
	if errors.Is(err, found) {
		return true, nil
	}
	return false, err
}
