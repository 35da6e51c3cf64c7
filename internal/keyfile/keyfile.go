// Package keyfile is the one place a private key lives on disk: PKCS#8
// PEM, mode 0600 under a 0700 directory, created on first use and linked
// into place atomically, so processes started together on one volume
// (`gateway token` beside `gateway serve`, replicas sharing a Secret)
// agree on one key and never read a half-written file. The dev issuer's
// key and the assertion key both use it.
package keyfile

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LoadOrCreate returns the private key at path, creating it with generate
// when the file does not exist. what names the key in errors ("dev
// signing key").
func LoadOrCreate(path, what string, generate func() (any, error)) (any, error) {
	if k, err := Read(path, what); err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	key, err := generate()
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", what, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", what, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the directory of %s: %w", what, err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", what, err)
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write %s %s: %w", what, path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write %s %s: %w", what, path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("install %s %s: %w", what, path, err)
	}
	return Read(path, what) // whoever linked first wins; everyone reads the same key
}

// Read returns the PKCS#8 private key at path. A missing file is an error
// wrapping os.ErrNotExist.
func Read(path, what string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s %s: not PEM", what, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s %s: not a PKCS#8 private key: %w", what, path, err)
	}
	return k, nil
}
