package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/urfave/cli/v2"
)

// How the CLI connects to a secured broker: TLS (server verification,
// optional client certificate for mTLS) and SASL (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512). Every command that talks to a broker registers
// clientFlags() once (adminFlags, produce, consume, bench) and builds its
// client with newClient, which applies clientOpts; a test walks the
// command tree so that a command with --brokers but without these flags
// fails CI.

// clientSecurityCategory groups the flags in --help.
const clientSecurityCategory = "Connection security"

// clientFlags are the TLS and SASL flags of every command that talks to a
// broker. Each has a CHRONIK_* environment variable. The client
// certificate's are CHRONIK_CLIENT_TLS_CERT_FILE and ..._KEY_FILE: serve's
// --tls-cert-file and --tls-key-file (the broker's own certificate) own
// CHRONIK_TLS_CERT_FILE and CHRONIK_TLS_KEY_FILE, and a shell or container
// holding both must not hand the server's key to the CLI.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "tls", EnvVars: []string{"CHRONIK_TLS"}, Category: clientSecurityCategory,
			Usage: "connect to the brokers over TLS (SSL or SASL_SSL listeners); implied by any other --tls-* flag"},
		&cli.StringFlag{Name: "tls-ca-file", EnvVars: []string{"CHRONIK_TLS_CA_FILE"}, Category: clientSecurityCategory,
			Usage: "PEM CA certificate(s) to verify the brokers with, instead of the system's"},
		&cli.StringFlag{Name: "tls-cert-file", EnvVars: []string{"CHRONIK_CLIENT_TLS_CERT_FILE"}, Category: clientSecurityCategory,
			Usage: "PEM client certificate (chain) for mutual TLS; with --tls-key-file"},
		&cli.StringFlag{Name: "tls-key-file", EnvVars: []string{"CHRONIK_CLIENT_TLS_KEY_FILE"}, Category: clientSecurityCategory,
			Usage: "PEM private key of --tls-cert-file"},
		&cli.StringFlag{Name: "tls-server-name", EnvVars: []string{"CHRONIK_TLS_SERVER_NAME"}, Category: clientSecurityCategory,
			Usage: "name the brokers' certificates must carry (default: the host of each broker address)"},
		&cli.BoolFlag{Name: "tls-insecure-skip-verify", EnvVars: []string{"CHRONIK_TLS_INSECURE_SKIP_VERIFY"}, Category: clientSecurityCategory,
			Usage: "accept any broker certificate (a lab only: anyone in the path can read and change the traffic)"},
		&cli.StringFlag{Name: "sasl-mechanism", EnvVars: []string{"CHRONIK_SASL_MECHANISM"}, Category: clientSecurityCategory,
			Usage: "authenticate with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN sends the password: use it over TLS)"},
		&cli.StringFlag{Name: "sasl-user", EnvVars: []string{"CHRONIK_SASL_USER"}, Category: clientSecurityCategory,
			Usage: "SASL user name"},
		&cli.StringFlag{Name: "sasl-password", EnvVars: []string{"CHRONIK_SASL_PASSWORD"}, Category: clientSecurityCategory,
			Usage: "SASL password; prefer the environment variable or --sasl-password-file (a flag shows in the process list)"},
		&cli.StringFlag{Name: "sasl-password-file", EnvVars: []string{"CHRONIK_SASL_PASSWORD_FILE"}, Category: clientSecurityCategory,
			Usage: "file holding the SASL password (its trailing newline ignored)"},
	}
}

// clientOpts turns the client security flags into kgo options. Mistakes
// (a missing file, an unknown mechanism, a user without a password) are
// usage errors: exit 2.
func clientOpts(c *cli.Context) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	cfg, err := clientTLS(c)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	mech, err := clientSASL(c)
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// clientTLS is the TLS configuration of --tls and the --tls-* flags, nil
// for plaintext. Any --tls-* flag implies --tls, as rpk does.
func clientTLS(c *cli.Context) (*tls.Config, error) {
	caFile, certFile, keyFile := c.String("tls-ca-file"), c.String("tls-cert-file"), c.String("tls-key-file")
	serverName, skip := c.String("tls-server-name"), c.Bool("tls-insecure-skip-verify")
	if !c.Bool("tls") && caFile == "" && certFile == "" && keyFile == "" && serverName == "" && !skip {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: skip}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, usageErr("tls-ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErr("tls-ca-file %s: no PEM certificate in it", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, usageErr("tls-cert-file and tls-key-file: give both or neither (got cert %q, key %q)", certFile, keyFile)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, usageErr("tls-cert-file %s, tls-key-file %s: %v", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// clientSASL is the SASL mechanism of --sasl-*, nil when none is asked.
func clientSASL(c *cli.Context) (sasl.Mechanism, error) {
	name := strings.ToUpper(strings.TrimSpace(c.String("sasl-mechanism")))
	user := c.String("sasl-user")
	pass, err := saslPassword(c)
	if err != nil {
		return nil, err
	}
	if name == "" {
		if user != "" || pass != "" {
			return nil, usageErr("sasl-mechanism: not set, but a SASL user or password is (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return nil, nil
	}
	if user == "" {
		return nil, usageErr("sasl-user: needed with --sasl-mechanism %s", name)
	}
	if pass == "" {
		return nil, usageErr("sasl-password: needed with --sasl-mechanism %s (CHRONIK_SASL_PASSWORD, --sasl-password-file or --sasl-password)", name)
	}
	if c.IsSet("sasl-password") && os.Getenv("CHRONIK_SASL_PASSWORD") == "" {
		fmt.Fprintln(c.App.ErrWriter, "chronik: warning: --sasl-password shows in the process list; prefer CHRONIK_SASL_PASSWORD or --sasl-password-file")
	}
	switch name {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, usageErr("sasl-mechanism: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.String("sasl-mechanism"))
}

// saslPassword is --sasl-password (or CHRONIK_SASL_PASSWORD) or the
// content of --sasl-password-file, not both.
func saslPassword(c *cli.Context) (string, error) {
	pass, file := c.String("sasl-password"), c.String("sasl-password-file")
	if file == "" {
		return pass, nil
	}
	if pass != "" {
		return "", usageErr("sasl-password and sasl-password-file: give one, not both")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", usageErr("sasl-password-file: %v", err)
	}
	pass = strings.TrimRight(string(data), "\r\n")
	if pass == "" {
		return "", usageErr("sasl-password-file %s: empty", file)
	}
	return pass, nil
}
