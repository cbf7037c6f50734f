package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node"
)

// controlFlags are `petrel node`'s coordinator options.
type controlFlags struct {
	natsURL, natsUser, natsPasswordFile, natsTokenFile, natsCreds string
	prefix, keyFile, labels, publicURL, keyHeader                 string
	statusInterval                                                time.Duration
}

func addControlFlags(fs *flag.FlagSet) *controlFlags {
	c := &controlFlags{}
	fs.StringVar(&c.natsURL, "nats-url", "", "the coordinator's NATS (nats://host:4222[,more]): sync models, report status")
	fs.StringVar(&c.natsUser, "nats-user", "", "NATS user name")
	fs.StringVar(&c.natsPasswordFile, "nats-password-file", "", "file holding the NATS user's password")
	fs.StringVar(&c.natsTokenFile, "nats-token-file", "", "file holding a NATS token")
	fs.StringVar(&c.natsCreds, "nats-creds", "", "NATS credentials file (JWT and nkey)")
	fs.StringVar(&c.prefix, "nats-prefix", "", "bucket and subject prefix (default petrel)")
	fs.StringVar(&c.keyFile, "coordinator-key", "", "the coordinator's public key (PEM) that signs manifests; required with --nats-url")
	fs.StringVar(&c.labels, "labels", "", "node labels k=v,k=v for model placement")
	fs.StringVar(&c.publicURL, "public-url", "", "base URL clients reach this node at (default: from --listen)")
	fs.StringVar(&c.keyHeader, "request-key-header", node.DefaultRequestKeyHeader, "header whose value keeps a client on one version during a rollout")
	fs.DurationVar(&c.statusInterval, "status-interval", time.Second, "how often status and figures go to the coordinator")
	return c
}

func readSecret(path, what string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s %s is readable by group or others (mode %v); chmod 600 it", what, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return s, nil
}

func (c *controlFlags) apply(cc *node.ControlConfig) error {
	if c.natsURL == "" {
		if c.keyFile != "" || c.natsUser != "" || c.labels != "" {
			return fmt.Errorf("--coordinator-key, --nats-user and --labels need --nats-url")
		}
		return nil
	}
	if c.keyFile == "" {
		return fmt.Errorf("--nats-url needs --coordinator-key (the coordinator's public key, to verify manifests)")
	}
	pub, err := models.ReadPublicKey(c.keyFile)
	if err != nil {
		return fmt.Errorf("--coordinator-key: %w", err)
	}
	cc.CoordinatorKey = pub
	cc.NATS.URL, cc.NATS.User, cc.NATS.CredsFile = c.natsURL, c.natsUser, c.natsCreds
	if c.natsPasswordFile != "" {
		if cc.NATS.Password, err = readSecret(c.natsPasswordFile, "--nats-password-file"); err != nil {
			return err
		}
	}
	if c.natsTokenFile != "" {
		if cc.NATS.Token, err = readSecret(c.natsTokenFile, "--nats-token-file"); err != nil {
			return err
		}
	}
	cc.Prefix, cc.PublicURL, cc.RequestKeyHeader, cc.StatusInterval = c.prefix, c.publicURL, c.keyHeader, c.statusInterval
	if cc.StatusInterval <= 0 {
		return fmt.Errorf("--status-interval %v: must be positive", c.statusInterval)
	}
	if cc.Labels, err = coordinator.ParseLabels(c.labels); err != nil {
		return fmt.Errorf("--labels: %w", err)
	}
	return nil
}
