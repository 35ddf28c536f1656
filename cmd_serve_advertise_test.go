package main

import (
	"net"
	"testing"
)

func TestPickAdvertiseIP(t *testing.T) {
	ips := func(ss ...string) []net.IP {
		var out []net.IP
		for _, s := range ss {
			out = append(out, net.ParseIP(s))
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		ips      []net.IP
		ipv4Only bool
		want     string // "" for none
	}{
		{"nothing", nil, false, ""},
		{"loopback only", ips("127.0.0.1", "::1"), false, ""},
		{"link-local skipped", ips("169.254.3.4", "fe80::1", "10.1.2.3"), false, "10.1.2.3"},
		{"first IPv4", ips("192.168.1.5", "10.0.0.7"), false, "192.168.1.5"},
		{"IPv4 before IPv6", ips("fd00::2", "2001:db8::5", "172.16.0.9"), false, "172.16.0.9"},
		{"IPv6 when no IPv4", ips("127.0.0.1", "fe80::1", "fd00::2", "2001:db8::5"), false, "fd00::2"},
		{"IPv4 only skips IPv6", ips("fd00::2"), true, ""},
		{"IPv4-mapped counts as IPv4", ips("::ffff:10.9.8.7"), true, "10.9.8.7"},
		{"unspecified and multicast skipped", ips("0.0.0.0", "224.0.0.1", "ff02::1"), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickAdvertiseIP(tc.ips, tc.ipv4Only)
			if tc.want == "" {
				if got != nil {
					t.Fatalf("picked %v, want none", got)
				}
				return
			}
			if got.String() != tc.want {
				t.Fatalf("picked %v, want %s", got, tc.want)
			}
		})
	}
}

// On this machine: the default advertised host is one of its own
// addresses another machine could reach, or localhost only when it has
// none.
func TestPrimaryHostAddrOnThisHost(t *testing.T) {
	own := map[string]bool{}
	reachable := false
	for _, ip := range interfaceIPs() {
		own[ip.String()] = true
		reachable = reachable || ip.IsGlobalUnicast()
	}
	for _, ipv4Only := range []bool{false, true} {
		host := primaryHostAddr(ipv4Only)
		if host == "localhost" {
			if reachable && !ipv4Only {
				t.Errorf("primaryHostAddr(%v) = localhost although the interfaces have %v", ipv4Only, interfaceIPs())
			}
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsGlobalUnicast() || !own[host] {
			t.Errorf("primaryHostAddr(%v) = %q: not a reachable address of this host's interfaces %v", ipv4Only, host, interfaceIPs())
		}
		if ipv4Only && ip.To4() == nil {
			t.Errorf("primaryHostAddr(true) = %q, an IPv6 address for an IPv4 listener", host)
		}
	}
}

func TestAdvertisedAddr(t *testing.T) {
	for _, tc := range []struct {
		listen, advertise string
		wantHost          string
		wantPort          int32
	}{
		{":9092", "broker1.example.com:19092", "broker1.example.com", 19092},
		{":9092", "[2001:db8::7]:9092", "2001:db8::7", 9092},
		{"127.0.0.1:9092", "", "127.0.0.1", 9092},
		{"10.1.2.3:7000", "", "10.1.2.3", 7000},
		{"broker1.example.com:9092", "", "broker1.example.com", 9092},
		{":9092", "", primaryHostAddr(false), 9092},
		{"[::]:9093", "", primaryHostAddr(false), 9093},
		{"0.0.0.0:9094", "", primaryHostAddr(true), 9094},
	} {
		host, port, err := advertisedAddr(tc.listen, tc.advertise)
		if err != nil || host != tc.wantHost || port != tc.wantPort {
			t.Errorf("listen %q advertise %q: %s:%d (%v), want %s:%d", tc.listen, tc.advertise, host, port, err, tc.wantHost, tc.wantPort)
		}
	}
	for _, tc := range []struct{ listen, advertise string }{
		{"nope", ""},
		{":9092", "nohost"},
		{":9092", ":9092"},
		{":9092", "h:99999"},
	} {
		if host, port, err := advertisedAddr(tc.listen, tc.advertise); err == nil {
			t.Errorf("listen %q advertise %q: %s:%d, want an error", tc.listen, tc.advertise, host, port)
		}
	}
}

// serve warns when it listens on all interfaces but advertises an address
// only this machine can use.
func TestLoopbackAdvertiseWarningCondition(t *testing.T) {
	for _, tc := range []struct {
		listenHost, advertised string
		warn                   bool
	}{
		{"", "localhost", true},
		{"0.0.0.0", "127.0.0.1", true},
		{"::", "::1", true},
		{"", "10.0.0.5", false},
		{"", "broker1.example.com", false},
		{"127.0.0.1", "127.0.0.1", false},
		{"localhost", "localhost", false},
	} {
		if got := allInterfaces(tc.listenHost) && loopbackHost(tc.advertised); got != tc.warn {
			t.Errorf("listen host %q advertised %q: warn %v, want %v", tc.listenHost, tc.advertised, got, tc.warn)
		}
	}
}
