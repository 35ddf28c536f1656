package kafka

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The cost of security on the data path: the load of BenchmarkProduce and
// BenchmarkConsume (1 KiB records, acks=all, fsync always, 1 and 8
// partitions) over a PLAINTEXT listener, an SSL one (TLS 1.3 with an
// ECDSA P-256 certificate) and a SASL_SSL one (SCRAM-SHA-512 on top), and
// the rate of new SCRAM logins (the handshake cost).
//
//	go test -c -o /tmp/kafka.test ./kafka
//	/tmp/kafka.test -test.run '^$' -test.bench 'Secure|SCRAMConnect' -test.benchtime 3s -test.count 3

var securityBenchProtocols = []SecurityProtocol{ProtocolPlaintext, ProtocolSSL, ProtocolSASLSSL}

// secureBenchClient is a benchmark client of se: TLS when the listener
// has it, SCRAM-SHA-512 as alice when it wants SASL.
func secureBenchClient(b *testing.B, se *secureEnv, opts ...kgo.Opt) *kgo.Client {
	var m sasl.Mechanism
	if se.lcfg.Protocol.SASL() {
		m = scram.Auth{User: "alice", Pass: alicePassword}.AsSha512Mechanism()
	}
	return se.secureClient(m, append([]kgo.Opt{kgo.DefaultProduceTopic(benchTopic),
		kgo.ProducerBatchCompression(kgo.NoCompression())}, opts...)...)
}

// BenchmarkSecureProduce: produce throughput per listener protocol.
func BenchmarkSecureProduce(b *testing.B) {
	for _, proto := range securityBenchProtocols {
		for _, partitions := range []int32{1, 8} {
			b.Run(fmt.Sprintf("%s/partitions=%d", proto, partitions), func(b *testing.B) {
				se := startSecureEnv(b, proto, false)
				se.createTopic(benchTopic, partitions, nil)
				cl := secureBenchClient(b, se)
				produceN(b, cl, 1)
				b.SetBytes(benchRecordSize)
				b.ResetTimer()
				produceN(b, cl, b.N)
			})
		}
	}
}

// BenchmarkSecureConsume: consume throughput per listener protocol, from
// a 64 MiB topic filled beforehand (re-read from the start as b.N needs).
func BenchmarkSecureConsume(b *testing.B) {
	const preload = 64 << 10
	for _, proto := range securityBenchProtocols {
		for _, partitions := range []int32{1, 8} {
			se := startSecureEnv(b, proto, false)
			se.createTopic(benchTopic, partitions, nil)
			produceN(b, secureBenchClient(b, se), preload)
			b.Run(fmt.Sprintf("%s/partitions=%d", proto, partitions), func(b *testing.B) {
				b.SetBytes(benchRecordSize)
				b.ResetTimer()
				for consumed := 0; consumed < b.N; {
					consumed += secureConsumeFromStart(b, se, partitions, min(b.N-consumed, preload))
				}
			})
		}
	}
}

func secureConsumeFromStart(b *testing.B, se *secureEnv, partitions int32, n int) int {
	offsets := make(map[int32]kgo.Offset, partitions)
	for p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl := secureBenchClient(b, se, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{benchTopic: offsets}))
	defer cl.Close()
	got := 0
	for got < n {
		fs := cl.PollFetches(context.Background())
		fs.EachError(func(t string, p int32, err error) { b.Fatalf("fetch %s-%d: %v", t, p, err) })
		got += fs.NumRecords()
	}
	return got
}

// BenchmarkSCRAMConnect: one op is a new connection that logs in and
// answers one request (a Metadata of no topics), then closes: new
// connections per second with TLS and SCRAM-SHA-512 (4096 iterations, the
// credential's cost on both sides) beside TLS alone and plaintext.
func BenchmarkSCRAMConnect(b *testing.B) {
	for _, proto := range securityBenchProtocols {
		b.Run(string(proto), func(b *testing.B) {
			se := startSecureEnv(b, proto, false)
			b.ResetTimer()
			for range b.N {
				cl := secureBenchClient(b, se)
				if err := cl.Ping(context.Background()); err != nil {
					b.Fatal(err)
				}
				cl.Close()
			}
		})
	}
}
