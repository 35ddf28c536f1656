package main

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// Kafka listeners as Kafka configures them: --listeners
// "NAME://host:port,..." where NAME is a security protocol or a name that
// --listener-security-protocol-map maps to one, and --advertised-listeners
// "NAME://host:port,..." for what Metadata tells the clients of each
// listener. --listen and --advertise remain the short form of one
// PLAINTEXT listener.

// listenerSpec is one configured Kafka listener.
type listenerSpec struct {
	name     string
	protocol kafka.SecurityProtocol
	addr     string // to listen on, host:port (empty host: all interfaces)
	advHost  string // advertised
	advPort  int32
}

// parseListenerList splits "NAME://host:port,..." (setting is the flag's
// name, for errors).
func parseListenerList(setting, s string) ([][2]string, error) {
	var out [][2]string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, addr, ok := strings.Cut(part, "://")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s: %q is not NAME://host:port", setting, part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%s: %q: %v", setting, part, err)
		}
		name = strings.ToUpper(name)
		if slices.ContainsFunc(out, func(x [2]string) bool { return x[0] == name }) {
			return nil, fmt.Errorf("%s: listener name %s appears twice", setting, name)
		}
		out = append(out, [2]string{name, addr})
	}
	return out, nil
}

// parseProtocolMap parses "NAME:PROTOCOL,...".
func parseProtocolMap(s string) (map[string]kafka.SecurityProtocol, error) {
	m := map[string]kafka.SecurityProtocol{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, proto, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("listener-security-protocol-map: %q is not NAME:PROTOCOL", part)
		}
		p, err := kafka.ParseSecurityProtocol(strings.ToUpper(proto))
		if err != nil {
			return nil, fmt.Errorf("listener-security-protocol-map: %s: %v", name, err)
		}
		m[strings.ToUpper(name)] = p
	}
	return m, nil
}

// listenerSpecs resolves the listener settings into listeners with their
// advertised addresses.
func listenerSpecs(c *cli.Context) ([]listenerSpec, error) {
	if c.String("listeners") == "" {
		host, port, err := advertisedAddr(c.String("listen"), c.String("advertise"))
		if err != nil {
			return nil, err
		}
		if c.String("advertised-listeners") != "" {
			return nil, fmt.Errorf("advertised-listeners: needs listeners (with listen, use advertise)")
		}
		return []listenerSpec{{name: string(kafka.ProtocolPlaintext), protocol: kafka.ProtocolPlaintext,
			addr: c.String("listen"), advHost: host, advPort: port}}, nil
	}
	if c.IsSet("listen") || c.IsSet("advertise") {
		return nil, fmt.Errorf("listeners: set either listeners (and advertised-listeners) or listen (and advertise), not both")
	}
	list, err := parseListenerList("listeners", c.String("listeners"))
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("listeners: no listener in %q", c.String("listeners"))
	}
	protoMap, err := parseProtocolMap(c.String("listener-security-protocol-map"))
	if err != nil {
		return nil, err
	}
	adv, err := parseListenerList("advertised-listeners", c.String("advertised-listeners"))
	if err != nil {
		return nil, err
	}
	var specs []listenerSpec
	ports := map[string]string{}
	for _, l := range list {
		name, addr := l[0], l[1]
		proto, ok := protoMap[name]
		if !ok {
			if proto, err = kafka.ParseSecurityProtocol(name); err != nil {
				return nil, fmt.Errorf("listeners: %s is neither a security protocol nor in listener-security-protocol-map", name)
			}
		}
		_, port, _ := net.SplitHostPort(addr)
		if other, dup := ports[port]; dup && port != "0" {
			return nil, fmt.Errorf("listeners: %s and %s both use port %s", other, name, port)
		}
		ports[port] = name
		advAddr := ""
		for _, a := range adv {
			if a[0] == name {
				advAddr = a[1]
			}
		}
		host, advPort, err := advertisedAddr(addr, advAddr)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", name, err)
		}
		specs = append(specs, listenerSpec{name: name, protocol: proto, addr: addr, advHost: host, advPort: advPort})
	}
	for _, a := range adv {
		if !slices.ContainsFunc(specs, func(s listenerSpec) bool { return s.name == a[0] }) {
			return nil, fmt.Errorf("advertised-listeners: %s is not one of the listeners", a[0])
		}
	}
	return specs, nil
}

// endpoints are the listeners' advertised endpoints for broker.Config.
func endpoints(specs []listenerSpec) []broker.Endpoint {
	out := make([]broker.Endpoint, len(specs))
	for i, s := range specs {
		out[i] = broker.Endpoint{Name: s.name, Protocol: string(s.protocol), Host: s.advHost, Port: s.advPort}
	}
	return out
}

// securityConfig checks the TLS and SASL settings against the listeners
// and loads the certificate files (nil when no listener uses TLS).
func securityConfig(c *cli.Context, specs []listenerSpec) (*kafka.TLSFiles, error) {
	needTLS := slices.ContainsFunc(specs, func(s listenerSpec) bool { return s.protocol.TLS() })
	certSet := c.String("tls-cert-file") != "" || c.String("tls-key-file") != "" || c.String("tls-client-ca-file") != ""
	if !needTLS {
		if certSet {
			return nil, fmt.Errorf("tls-cert-file: set, but no listener uses SSL or SASL_SSL")
		}
		return nil, nil
	}
	if c.String("tls-cert-file") == "" || c.String("tls-key-file") == "" {
		return nil, fmt.Errorf("tls-cert-file and tls-key-file: needed by the SSL and SASL_SSL listeners")
	}
	files, err := kafka.LoadTLSFiles(c.String("tls-cert-file"), c.String("tls-key-file"), c.String("tls-client-ca-file"))
	if err != nil {
		return nil, fmt.Errorf("tls-cert-file: %w", err)
	}
	return files, nil
}

// parseMechanisms checks --sasl-mechanisms.
func parseMechanisms(s string) ([]string, error) {
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			continue
		}
		if !slices.Contains(kafka.SupportedSASLMechanisms, m) {
			return nil, fmt.Errorf("sasl-mechanisms: %s is not one of %s", m, strings.Join(kafka.SupportedSASLMechanisms, ", "))
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sasl-mechanisms: none given")
	}
	return out, nil
}

// boundListener is a listener with its socket.
type boundListener struct {
	spec listenerSpec
	ln   net.Listener
}

// bindListeners opens every listener's socket; on error none stays open.
func bindListeners(specs []listenerSpec) ([]boundListener, error) {
	var out []boundListener
	for _, s := range specs {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, b := range out {
				b.ln.Close()
			}
			return nil, fmt.Errorf("listen %s (listener %s): %v", s.addr, s.name, err)
		}
		out = append(out, boundListener{spec: s, ln: ln})
	}
	return out, nil
}

// serveListeners serves every bound listener; the first Serve error (or
// nil after Shutdown) comes on the channel.
func serveListeners(srv *kafka.Server, bound []boundListener, files *kafka.TLSFiles) chan error {
	served := make(chan error, len(bound))
	for _, b := range bound {
		lc := kafka.ListenerConfig{Name: b.spec.name, Protocol: b.spec.protocol}
		if b.spec.protocol.TLS() {
			lc.TLS = files.Config()
		}
		go func() { served <- srv.ServeListener(b.ln, lc) }()
	}
	return served
}

// logListeners logs each listener at start-up and warns about a listener
// on all interfaces advertising a loopback address.
func logListeners(bound []boundListener, log zerolog.Logger) {
	for _, b := range bound {
		adv := net.JoinHostPort(b.spec.advHost, strconv.Itoa(int(b.spec.advPort)))
		log.Info().Str("listener", b.spec.name).Str("protocol", string(b.spec.protocol)).
			Str("listen", b.ln.Addr().String()).Str("advertise", adv).Msg("Kafka listener up")
		if host, _, _ := net.SplitHostPort(b.spec.addr); allInterfaces(host) && loopbackHost(b.spec.advHost) {
			log.Warn().Str("listener", b.spec.name).Str("advertise", b.spec.advHost).
				Msg("listening on all interfaces but advertising a loopback address: clients on other machines get metadata, then cannot connect; set advertise (or advertised-listeners) to an address they reach")
		}
	}
}

// reloadTLS re-reads the certificate files on SIGHUP; a file that does
// not load leaves the old certificate in use.
func reloadTLS(files *kafka.TLSFiles, log zerolog.Logger) {
	if files == nil {
		return
	}
	if err := files.Reload(); err != nil {
		log.Error().Err(err).Msg("TLS certificates not reloaded; the previous ones stay in use")
		return
	}
	log.Info().Msg("TLS certificates reloaded; new connections use them")
}
