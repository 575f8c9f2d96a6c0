package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// NewKey creates a fresh nkey user key pair: the credential and signing key
// of one identity.
func NewKey() (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create nkey: %w", err)
	}
	return kp, nil
}

// WriteSeed stores a key pair's seed at path with mode 0600, refusing to
// overwrite an existing file.
func WriteSeed(path string, kp nkeys.KeyPair) error {
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("read seed: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write seed: %w", err)
	}
	_, werr := f.Write(append(seed, '\n'))
	return errors.Join(werr, f.Close())
}

// NewSeedFile creates a fresh key (NewKey), stores its seed at path
// (WriteSeed) and returns its public key.
func NewSeedFile(path string) (string, error) {
	kp, err := NewKey()
	if err != nil {
		return "", err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	return pub, WriteSeed(path, kp)
}

// LoadSeed reads an nkey seed file written by WriteSeed (or by nsc/nk).
func LoadSeed(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seed file: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("seed file %s: %w", path, err)
	}
	return kp, nil
}
