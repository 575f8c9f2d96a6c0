package broker

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/schemas"
)

// A key folder holds the public keys of identities, to check their
// signatures with (tollgate replay --keys, and DIR/keys of a demo's data
// folder): <id>.pub files of nkey public keys, one per line, oldest first
// (# starts a comment), and <id>.nk seed files (WriteSeed), whose public
// key counts. Other files are ignored.
const (
	// PublicKeyExt ends the name of an identity's public key file.
	PublicKeyExt = ".pub"
	// SeedExt ends the name of an identity's seed file.
	SeedExt = ".nk"
)

// ReadKeyDir reads a key folder: every identity's public keys, in the order
// its files list them. It reports every bad file or line at once, returning
// the keys it could read beside the error.
func ReadKeyDir(dir string) (map[string][]ed25519.PublicKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	keys := map[string][]ed25519.PublicKey{}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		id := strings.TrimSuffix(name, ext)
		if e.IsDir() || ext != PublicKeyExt && ext != SeedExt {
			continue
		}
		path := filepath.Join(dir, name)
		if !schemas.ValidPrincipalID(id) {
			errs = append(errs, fmt.Errorf("key file %s: %q is not an identity id", path, id))
			continue
		}
		if ext == SeedExt {
			pub, err := seedPublicKey(path)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			keys[id] = append(keys[id], pub)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("keys: %w", err))
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			pub, err := ParsePublicKey(line)
			if err != nil {
				errs = append(errs, fmt.Errorf("key file %s:%d: %w", path, n, err))
				continue
			}
			keys[id] = append(keys[id], pub)
		}
	}
	return keys, errors.Join(errs...)
}

// seedPublicKey is the public key of a seed file.
func seedPublicKey(path string) (ed25519.PublicKey, error) {
	kp, err := LoadSeed(path)
	if err != nil {
		return nil, err
	}
	pk, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	pub, err := ParsePublicKey(pk)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return pub, nil
}

// AddPublicKey adds an identity's nkey public key to its file in a key
// folder (created when missing), unless the file lists it already. Keys are
// added, never replaced: signatures made with an identity's earlier keys
// still check.
func AddPublicKey(dir, id, pub string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("key folder: %w", err)
	}
	path := filepath.Join(dir, id+PublicKeyExt)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	if slices.Contains(strings.Fields(string(old)), pub) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	_, werr := fmt.Fprintln(f, pub)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return nil
}
