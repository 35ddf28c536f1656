//go:build race

package kafka

// raceEnabled scales heavy tests down under the race detector.
const raceEnabled = true
