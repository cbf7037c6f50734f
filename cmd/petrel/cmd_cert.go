package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"time"

	"github.com/petrel-mesh/petrel/node/meshtls"
)

// runCert makes the credentials of a local or development mesh: a CA,
// node certificates from it, and gossip keys. Production meshes bring
// their own PKI and give nodes --mesh-cert/--mesh-key/--mesh-ca.
func runCert(_ context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: petrel cert ca --dir D | node --ca-dir D --id ID [--host h,...] [--out D] | gossip-key [--bytes 32]")
		return 2
	}
	switch args[0] {
	case "ca":
		fs := flag.NewFlagSet("petrel cert ca", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		dir := fs.String("dir", "", "directory for ca.pem and ca-key.pem (created; an existing CA there is kept)")
		days := fs.Int("days", 365, "validity in days")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *dir == "" || *days < 1 || fs.NArg() > 0 {
			fmt.Fprintln(e.stderr, "petrel cert ca: want --dir D and --days >= 1")
			return 2
		}
		if _, err := meshtls.NewDevCA(*dir, time.Duration(*days)*24*time.Hour); err != nil {
			fmt.Fprintf(e.stderr, "petrel cert ca: %v\n", err)
			return 1
		}
		fmt.Fprintf(e.stdout, "mesh CA in %s (ca.pem, ca-key.pem)\n", *dir)
		return 0
	case "node":
		fs := flag.NewFlagSet("petrel cert node", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		caDir := fs.String("ca-dir", "", "directory of the mesh CA (petrel cert ca)")
		id := fs.String("id", "", "node id (the certificate names it)")
		hosts := fs.String("host", "127.0.0.1,localhost", "comma-separated IP addresses and DNS names of the node")
		out := fs.String("out", "", "output directory (default: <ca-dir>/nodes)")
		days := fs.Int("days", 90, "validity in days")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *caDir == "" || *id == "" || *days < 1 || fs.NArg() > 0 {
			fmt.Fprintln(e.stderr, "petrel cert node: want --ca-dir D --id ID (and --days >= 1)")
			return 2
		}
		if *out == "" {
			*out = *caDir + "/nodes"
		}
		ca, err := meshtls.LoadCA(*caDir)
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel cert node: %v\n", err)
			return 1
		}
		cert, key, err := ca.IssueNode(*id, splitList(*hosts), *out, time.Duration(*days)*24*time.Hour)
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel cert node: %v\n", err)
			return 1
		}
		fmt.Fprintf(e.stdout, "certificate %s\nkey %s\n", cert, key)
		return 0
	case "gossip-key":
		fs := flag.NewFlagSet("petrel cert gossip-key", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		n := fs.Int("bytes", 32, "key size: 16, 24 or 32 (AES-128/192/256)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *n != 16 && *n != 24 && *n != 32 {
			fmt.Fprintln(e.stderr, "petrel cert gossip-key: --bytes must be 16, 24 or 32")
			return 2
		}
		k := make([]byte, *n)
		rand.Read(k)
		fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(k))
		return 0
	default:
		fmt.Fprintf(e.stderr, "petrel cert: unknown subcommand %q (want ca, node or gossip-key)\n", args[0])
		return 2
	}
}
