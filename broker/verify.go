package broker

import (
	"errors"

	"github.com/chronik-stream/chronik/wal"
)

// DefaultVerifyBytesPerSec is how fast the background verifier reads by
// default (Config.VerifyBytesPerSec).
const DefaultVerifyBytesPerSec = 64 << 20

// verifyLogs runs once after start-up, in the background: it reads the
// sealed segments that Open took from the clean-shutdown markers without
// reading them (wal.Log.VerifySealed), partition after partition, at most
// Config.VerifyBytesPerSec. Damage faults the partition, as a read that met
// it would have, so that a replica whose old segment rotted while the node
// was down is found and repaired without waiting for a reader.
func (b *Broker) verifyLogs() {
	defer b.wg.Done()
	logOf := func(p *partition) *wal.Log {
		if p == nil {
			return nil
		}
		p.appendMu.Lock()
		defer p.appendMu.Unlock()
		return p.log
	}
	parts := b.allPartitions()
	for _, p := range parts {
		if log := logOf(p); log != nil {
			b.verifyPending.Add(log.Unverified())
		}
	}
	rate := newByteRate(b.cfg.VerifyBytesPerSec)
	for _, p := range parts {
		select {
		case <-b.stop:
			return
		default:
		}
		log := logOf(p)
		if log == nil {
			continue
		}
		err := log.VerifySealed(func(n int64) bool {
			b.verifyPending.Add(-n)
			rate.wait(n, b.stop)
			select {
			case <-b.stop:
				return false
			default:
				return true
			}
		})
		if err != nil && !errors.Is(err, wal.ErrClosed) {
			p.storageFailed(err)
		}
	}
	b.verifyPending.Store(0)
}

// VerifyPending is how many bytes of sealed segments the background
// verifier has yet to read (0 once it is done).
func (b *Broker) VerifyPending() int64 { return max(b.verifyPending.Load(), 0) }
