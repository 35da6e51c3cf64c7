package proxy

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// CertReloader serves a certificate from files and picks up new files
// (a renewal by cert-manager or certbot) without a restart. It looks at the
// files at most once per CheckEvery; a broken new pair is logged and the
// last good certificate kept.
type CertReloader struct {
	certFile, keyFile string
	checkEvery        time.Duration
	log               *zap.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// NewCertReloader loads the pair once, so a bad file fails before the
// gateway listens.
func NewCertReloader(certFile, keyFile string, checkEvery time.Duration, log *zap.Logger) (*CertReloader, error) {
	c := &CertReloader{certFile: certFile, keyFile: keyFile, checkEvery: checkEvery, log: log}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// GetCertificate is a tls.Config.GetCertificate.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) >= c.checkEvery {
		c.checked = time.Now()
		if st, _ := c.fileStamp(); st != c.stamp {
			if err := c.reloadLocked(); err != nil {
				c.log.Error("TLS certificate reload failed; keeping the previous one", zap.Error(err))
			} else {
				c.log.Info("TLS certificate reloaded", zap.String("cert_file", c.certFile))
			}
		}
	}
	return c.cert, nil
}

func (c *CertReloader) fileStamp() (string, error) {
	var s string
	for _, f := range []string{c.certFile, c.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d/%d;", st.ModTime().UnixNano(), st.Size())
	}
	return s, nil
}

func (c *CertReloader) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked()
}

func (c *CertReloader) reloadLocked() error {
	stamp, err := c.fileStamp()
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s: %w", c.certFile, err)
	}
	c.cert, c.stamp = &cert, stamp
	return nil
}
