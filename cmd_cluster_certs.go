package main

// chronik cluster certs: a cluster CA and node certificates for peer TLS,
// for labs and small deployments. A deployment with its own CA issues the
// node certificates there instead (what they need: README, "Peer TLS").

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/cluster"
)

const caValidity = 10 * 365 * 24 * time.Hour

func clusterCertsCommand() *cli.Command {
	return adminCommand(&cli.Command{
		Name:  "certs",
		Usage: "write a cluster CA and node certificates for peer TLS (--peer-tls-*) into a directory",
		Description: "Writes ca.pem and ca-key.pem (a new ECDSA P-256 CA, unless the directory has them: then they issue the new\n" +
			"node certificates, e.g. for a node that joins) and node-N.pem and node-N-key.pem for each node N: certificates\n" +
			"naming the node id (URI SAN chronik-node://N), for TLS servers and clients. Keys are written 0600. Existing\n" +
			"node files are never overwritten. Copy ca.pem, node-N.pem and node-N-key.pem to node N; keep ca-key.pem\n" +
			"somewhere else.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "directory to write into (created 0700 if missing)"},
			&cli.StringFlag{Name: "nodes", Required: true, Usage: "node ids, comma-separated (1,2,3)"},
			&cli.StringFlag{Name: "hosts", Usage: "host names or IP addresses to add to node certificates as SANs, as id=host entries, comma-separated " +
				"(id=host:port entries, e.g. the --peers value, work too); the peer transport itself identifies nodes by id only"},
			&cli.IntFlag{Name: "days", Value: 730, Usage: "how long the node certificates are valid (the CA: 10 years)"},
		},
		Action: withArgs("no arguments", 0, 0, clusterCerts),
	})
}

// parseNodeIDs reads --nodes.
func parseNodeIDs(s string) ([]uint64, error) {
	var ids []uint64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		id, err := strconv.ParseUint(f, 10, 31)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("nodes: %q is not a node id (1 to 2147483647)", f)
		}
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("nodes: node %d is listed twice", id)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// parseCertHosts reads --hosts: id=host or id=host:port entries.
func parseCertHosts(s string, ids []uint64) (map[uint64][]string, error) {
	hosts := make(map[uint64][]string)
	if strings.TrimSpace(s) == "" {
		return hosts, nil
	}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		idStr, h, ok := strings.Cut(e, "=")
		id, err := strconv.ParseUint(strings.TrimSpace(idStr), 10, 31)
		if !ok || err != nil {
			return nil, fmt.Errorf("hosts: %q is not id=host", e)
		}
		if !slices.Contains(ids, id) {
			return nil, fmt.Errorf("hosts: %q: node %d is not in --nodes", e, id)
		}
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		h = strings.Trim(strings.TrimSpace(h), "[]")
		if h == "" || strings.ContainsAny(h, " /") {
			return nil, fmt.Errorf("hosts: %q: %q is not a host name or IP address", e, h)
		}
		hosts[id] = append(hosts[id], h)
	}
	return hosts, nil
}

func clusterCerts(c *cli.Context, _ []string) error {
	ids, err := parseNodeIDs(c.String("nodes"))
	if err != nil {
		return usageErr("%v", err)
	}
	hosts, err := parseCertHosts(c.String("hosts"), ids)
	if err != nil {
		return usageErr("%v", err)
	}
	days := c.Int("days")
	if days < 1 || days > 36500 {
		return usageErr("days: %d is not between 1 and 36500", days)
	}
	written, err := writeClusterCerts(c.String("out"), ids, hosts, time.Duration(days)*24*time.Hour)
	for _, f := range written {
		fmt.Fprintf(c.App.Writer, "wrote %s\n", f)
	}
	if err != nil {
		return failErr("cluster certs: %v", err)
	}
	return nil
}

// writeClusterCerts writes (or reuses) the CA in dir and a certificate and
// key for each node, and returns the files it wrote. It refuses to
// overwrite a node's files.
func writeClusterCerts(dir string, ids []uint64, hosts map[uint64][]string, validFor time.Duration) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, id := range ids {
		for _, f := range nodeCertFiles(dir, id) {
			if _, err := os.Stat(f); err == nil {
				return nil, fmt.Errorf("%s exists; remove it to issue node %d a new certificate", f, id)
			}
		}
	}
	var written []string
	ca, created, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	if created {
		written = append(written, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	}
	now := time.Now()
	for _, id := range ids {
		cert, key, err := ca.IssueNode(id, hosts[id], now.Add(-time.Minute), now.Add(validFor))
		if err != nil {
			return written, fmt.Errorf("node %d: %w", id, err)
		}
		files := nodeCertFiles(dir, id)
		if err := writeNew(files[1], key, 0o600); err != nil {
			return written, err
		}
		written = append(written, files[1])
		if err := writeNew(files[0], cert, 0o644); err != nil {
			return written, err
		}
		written = append(written, files[0])
	}
	return written, nil
}

// nodeCertFiles are node id's certificate and key files in dir.
func nodeCertFiles(dir string, id uint64) [2]string {
	n := strconv.FormatUint(id, 10)
	return [2]string{filepath.Join(dir, "node-"+n+".pem"), filepath.Join(dir, "node-"+n+"-key.pem")}
}

// loadOrCreateCA reads dir's ca.pem and ca-key.pem, or makes and writes a
// new CA when neither exists.
func loadOrCreateCA(dir string) (*cluster.CertAuthority, bool, error) {
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	certPEM, errC := os.ReadFile(certFile)
	keyPEM, errK := os.ReadFile(keyFile)
	switch {
	case errC == nil && errK == nil:
		ca, err := cluster.LoadCertAuthority(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
		}
		return ca, false, nil
	case errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist):
	case errC != nil && !errors.Is(errC, fs.ErrNotExist):
		return nil, false, errC
	case errK != nil && !errors.Is(errK, fs.ErrNotExist):
		return nil, false, errK
	default:
		return nil, false, fmt.Errorf("%s and %s go together: one of them is missing", certFile, keyFile)
	}
	ca, err := cluster.NewCertAuthority("Chronik cluster CA", caValidity)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err = ca.KeyPEM()
	if err != nil {
		return nil, false, err
	}
	if err := writeNew(keyFile, keyPEM, 0o600); err != nil {
		return nil, false, err
	}
	if err := writeNew(certFile, ca.CertPEM(), 0o644); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// writeNew creates path with perm (never over an existing file) and
// writes b to it, synced.
func writeNew(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
