package kafka

// Kafka's nullable strings and the broker's plain ones: the broker API
// takes "" for an absent value, the wire has null.

// derefString is p's value, or "" for null.
func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// stringPtrOrNil is s as a nullable string: null for "".
func stringPtrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
