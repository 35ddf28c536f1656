package broker

import "testing"

// Expected values were computed with java.lang.String.hashCode on a JVM
// (OpenJDK), applying Kafka's Utils.abs (h & 0x7fffffff) and the modulo.
func TestGroupOffsetsPartition(t *testing.T) {
	tests := []struct {
		group    string
		hash     int32
		part50   int32
		part7    int32
		whatItIs string
	}{
		{"", 0, 0, 0, "empty"},
		{"a", 97, 47, 6, "one ASCII char"},
		{"hello", 99162322, 22, 0, "ASCII"},
		{"polygenelubricants", -2147483648, 0, 0, "hash is Integer.MIN_VALUE: Math.abs would stay negative"},
		{"my-group", -1906497762, 36, 1, "negative hash"},
		{"console-consumer-12345", 158455506, 6, 6, "kafka-console-consumer's default"},
		{"Aa", 2112, 12, 5, "collides with BB"},
		{"BB", 2112, 12, 5, "collides with Aa"},
		{"\U0001F600group", -1231696132, 16, 0, "a code point above U+FFFF counts as two UTF-16 units"},
		{"grüppe-日本", -1040886016, 32, 0, "two- and three-byte UTF-8"},
		{"connect-cluster", 1440343063, 13, 5, "Kafka Connect's default"},
		{"__consumer_offsets", -970371369, 29, 0, "internal topic name"},
	}
	for _, tt := range tests {
		t.Run(tt.whatItIs, func(t *testing.T) {
			if got := groupJavaStringHashCode(tt.group); got != tt.hash {
				t.Fatalf("hashCode(%q) = %d, want %d", tt.group, got, tt.hash)
			}
			if got := GroupOffsetsPartition(tt.group, 50); got != tt.part50 {
				t.Fatalf("partition of %q among 50 = %d, want %d", tt.group, got, tt.part50)
			}
			if got := GroupOffsetsPartition(tt.group, 7); got != tt.part7 {
				t.Fatalf("partition of %q among 7 = %d, want %d", tt.group, got, tt.part7)
			}
		})
	}
}
