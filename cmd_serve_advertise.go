package main

import (
	"fmt"
	"net"
	"strconv"
)

// advertisedAddr picks what Metadata tells clients: --advertise when given;
// else the listen address when it names a host; else, for a listener on all
// interfaces (":9092", "0.0.0.0:9092", "[::]:9092"), this host's primary
// address (primaryHostAddr). Kafka advertises the host's canonical name
// there; a name need not resolve where the clients are (another machine, a
// container, a network namespace), an address does.
func advertisedAddr(listen, advertise string) (string, int32, error) {
	addr := advertise
	if addr == "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return "", 0, fmt.Errorf("listen: %q is not host:port: %v", listen, err)
		}
		if allInterfaces(host) {
			host = primaryHostAddr(host == "0.0.0.0")
		}
		addr = net.JoinHostPort(host, port)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("advertise: %q is not host:port: %v", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("advertise: %q needs a host and a port 0-65535", addr)
	}
	return host, int32(port), nil
}

// allInterfaces reports whether a listen host means every interface.
func allInterfaces(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// loopbackHost reports whether clients told host could only be on this
// machine.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// primaryHostAddr is the address to advertise for a listener on all
// interfaces: the address the kernel sends from on the route off this host
// (the default route's interface), else the first address of an interface
// that is up; IPv4 before IPv6 (IPv4 only for a 0.0.0.0 listener, which
// takes no IPv6 connections); loopback and link-local addresses never.
// "localhost" when the host has none, which serve warns about.
func primaryHostAddr(ipv4Only bool) string {
	if ip := pickAdvertiseIP(routeSourceIPs(), ipv4Only); ip != nil {
		return ip.String()
	}
	if ip := pickAdvertiseIP(interfaceIPs(), ipv4Only); ip != nil {
		return ip.String()
	}
	return "localhost"
}

// pickAdvertiseIP is the first address of ips that another machine could
// connect to (global unicast, private ranges included), IPv4 first; nil if
// there is none.
func pickAdvertiseIP(ips []net.IP, ipv4Only bool) net.IP {
	var v6 net.IP
	for _, ip := range ips {
		if !ip.IsGlobalUnicast() {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			return v4
		}
		if v6 == nil && !ipv4Only {
			v6 = ip
		}
	}
	return v6
}

// routeSourceIPs are the source addresses the kernel chooses to reach an
// IPv4 and an IPv6 documentation address (RFC 5737, RFC 3849), that is the
// addresses of the interface with the default route. Connecting a UDP
// socket sends nothing. Empty without a default route.
func routeSourceIPs() []net.IP {
	var ips []net.IP
	for _, target := range []string{"192.0.2.1:9", "[2001:db8::1]:9"} {
		conn, err := net.Dial("udp", target)
		if err != nil {
			continue
		}
		if a, ok := conn.LocalAddr().(*net.UDPAddr); ok {
			ips = append(ips, a.IP)
		}
		conn.Close()
	}
	return ips
}

// interfaceIPs lists the addresses of the interfaces that are up, in the
// kernel's interface order. Empty when they cannot be listed (a sandbox
// without netlink sockets).
func interfaceIPs() []net.IP {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var ips []net.IP
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP)
			}
		}
	}
	return ips
}
