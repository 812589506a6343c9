package app

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/secretbox"
)

// DevKeyFileName is the file that holds the development
// JOBS_ENCRYPTION_KEY, in the folder of the SQLite file (SQLITE_PATH's,
// data/ by default). A development server with no JOBS_ENCRYPTION_KEY
// creates it on first start and reuses it after; production never does.
const DevKeyFileName = "encryption.key"

// DevKeyPath is where the development key of cfg lives: beside the SQLite
// file, also when DATABASE_URL names a Postgres database (the data folder
// is then used for the key only).
func DevKeyPath(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.SQLitePath), DevKeyFileName)
}

// devKey is a development key read or created by loadOrCreateDevKey.
type devKey struct {
	// spec is the keyring (kid:base64key); never logged.
	spec string
	// created: this call wrote the file.
	created bool
	// loose: the file may be read by others than its owner.
	loose bool
}

// loadOrCreateDevKey returns the key stored at path, creating the file
// (mode 0600, and its folder, mode 0700, if missing) with a new key when
// it does not exist. Creation is atomic: the key is written and synced to
// a temporary file in the same folder, then hard-linked to path, which
// fails when another start got there first; that start's key is read
// instead. So concurrent starts never use two keys, and no start reads a
// half-written file. Errors name the file, never its content.
func loadOrCreateDevKey(path string) (devKey, error) {
	if k, err := readDevKey(path); !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return devKey{}, fmt.Errorf("development encryption key: create folder %s: %w", dir, err)
	}
	spec, err := secretbox.GenerateKey()
	if err != nil {
		return devKey{}, fmt.Errorf("development encryption key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+DevKeyFileName+"-*") // mode 0600
	if err != nil {
		return devKey{}, fmt.Errorf("development encryption key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(spec + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return devKey{}, fmt.Errorf("development encryption key: write %s: %w", tmp.Name(), err)
	}
	switch err := os.Link(tmp.Name(), path); {
	case err == nil:
		syncDir(dir)
		return devKey{spec: spec, created: true}, nil
	case errors.Is(err, fs.ErrExist):
		return readDevKey(path)
	default:
		return devKey{}, fmt.Errorf("development encryption key: create %s: %w", path, err)
	}
}

// readDevKey reads and checks the key file at path.
func readDevKey(path string) (devKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return devKey{}, err
		}
		return devKey{}, fmt.Errorf("development encryption key: read %s: %w", path, err)
	}
	spec := strings.TrimSpace(string(raw))
	if _, err := secretbox.ParseKeyring(spec); err != nil {
		// ParseKeyring's errors never repeat key material.
		return devKey{}, fmt.Errorf("development encryption key: %s does not hold a JOBS_ENCRYPTION_KEY (%w); "+
			"delete it only if no job sealed with it is left", path, err)
	}
	k := devKey{spec: spec}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		k.loose = true
	}
	return k, nil
}

// syncDir makes a new directory entry durable, where the platform allows.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// openKeyring returns the keyring that seals secret payload fields:
// JOBS_ENCRYPTION_KEY when set; else, when some job type has secret fields
// (secretTypes), in development the key file at DevKeyPath (created on
// first start), and in production an error. It logs which, and why.
func openKeyring(cfg *config.Config, secretTypes []string, log *slog.Logger) (*secretbox.Keyring, error) {
	if cfg.JobsEncryptionKey != "" {
		kr, err := secretbox.ParseKeyring(cfg.JobsEncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("JOBS_ENCRYPTION_KEY: %w", err)
		}
		log.Info("secrets: payload fields marked secret are encrypted", "keyring", kr, "why", "JOBS_ENCRYPTION_KEY set")
		return kr, nil
	}
	if len(secretTypes) == 0 {
		return nil, nil
	}
	if cfg.Production() {
		return nil, fmt.Errorf("job types %v have secret payload fields but JOBS_ENCRYPTION_KEY is not set: "+
			"set it (e.g. from `jobhook keygen`); production does not generate one", secretTypes)
	}
	path := DevKeyPath(cfg)
	k, err := loadOrCreateDevKey(path)
	if err != nil {
		return nil, err
	}
	kr, err := secretbox.ParseKeyring(k.spec)
	if err != nil {
		return nil, fmt.Errorf("development encryption key %s: %w", path, err)
	}
	why := "JOBS_ENCRYPTION_KEY not set; development key created by an earlier start"
	if k.created {
		why = "JOBS_ENCRYPTION_KEY not set; development key generated on this first start"
	}
	if cfg.DatabaseURL != "" {
		why += "; every server on this database needs the same key: set JOBS_ENCRYPTION_KEY to the file's content"
	}
	log.Info("secrets: payload fields marked secret are encrypted with the key in "+path, "keyring", kr, "why", why)
	if k.loose {
		log.Warn("secrets: "+path+" may be read by other users; chmod 600 it", "why", "the file's mode allows group or other access")
	}
	return kr, nil
}
