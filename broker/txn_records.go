package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// __transaction_state records, in Kafka's schema (TransactionLog.java): the
// key is the transactional id (key version 0); the value is the id's
// metadata (value version 0 before Kafka 4.0; version 1, flexible, adds the
// previous and next producer ids and the client's transaction version as
// tagged fields) or null, a tombstone, when the id expired.
//
// Chronik writes value version 1, as Kafka 4.0 does with transaction
// version 2, so that nothing the state machine keeps is lost; it reads both.
// Kafka does not write the last producer epoch (it reads back as -1), and
// writes no partitions for Empty (a null array).

// ErrTxnRecordCorrupt marks a record that cannot be decoded: bad lengths,
// an unknown value version or a value no coordinator writes.
var ErrTxnRecordCorrupt = errors.New("corrupt __transaction_state record")

// ErrTxnRecordUnknown marks a record whose key version this coordinator
// does not know; Kafka skips those on load ("a left over from an aborted
// upgrade").
var ErrTxnRecordUnknown = errors.New("unknown __transaction_state record type")

const (
	txnmKeyVersion      = 0
	txnmValueVersion    = 1
	txnmMaxValueVersion = 1
)

// EncodeTxnRecord encodes an id's metadata. Partitions must be sorted
// without duplicates (as TxnTable keeps them); they are written grouped by
// topic in that order.
func EncodeTxnRecord(m *TxnMetadata) TxnRecord {
	v := kmsg.NewTxnMetadataValue()
	v.Version = txnmValueVersion
	v.ProducerID = m.ProducerID
	v.ProducerEpoch = m.ProducerEpoch
	v.TimeoutMillis = m.TimeoutMs
	v.State = kmsg.TransactionState(m.State)
	v.LastUpdateTimestamp = m.LastUpdateMs
	v.StartTimestamp = m.StartMs
	v.PreviousProducerID = m.PrevProducerID
	v.NextProducerID = m.NextProducerID
	v.ClientTransactionVersion = m.ClientTransactionVersion
	if m.State != TxnEmpty {
		v.Topics = []kmsg.TxnMetadataValueTopic{} // not null: Kafka writes null only for Empty
		for _, p := range m.Partitions {
			if n := len(v.Topics); n == 0 || v.Topics[n-1].Topic != p.Topic {
				v.Topics = append(v.Topics, kmsg.TxnMetadataValueTopic{Topic: p.Topic})
			}
			last := &v.Topics[len(v.Topics)-1]
			last.Partitions = append(last.Partitions, p.Partition)
		}
	}
	return TxnRecord{Key: txnmKey(m.TransactionalID), Value: v.AppendTo(nil)}
}

// EncodeTxnTombstone encodes the removal of an expired id.
func EncodeTxnTombstone(txnID string) TxnRecord {
	return TxnRecord{Key: txnmKey(txnID)}
}

func txnmKey(txnID string) []byte {
	k := kmsg.TxnMetadataKey{Version: txnmKeyVersion, TransactionalID: txnID}
	return k.AppendTo(make([]byte, 0, 2+2+len(txnID)))
}

// DecodeTxnRecord decodes one __transaction_state record; m is nil for a
// tombstone (value nil). Errors wrap ErrTxnRecordCorrupt or
// ErrTxnRecordUnknown. Nothing returned aliases key or value.
func DecodeTxnRecord(key, value []byte) (txnID string, m *TxnMetadata, err error) {
	if len(key) < 2 {
		return "", nil, fmt.Errorf("%w: key of %d bytes", ErrTxnRecordCorrupt, len(key))
	}
	switch version := int16(binary.BigEndian.Uint16(key)); {
	case version < 0:
		return "", nil, fmt.Errorf("%w: key version %d", ErrTxnRecordCorrupt, version)
	case version != txnmKeyVersion:
		return "", nil, fmt.Errorf("%w: key version %d", ErrTxnRecordUnknown, version)
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return "", nil, fmt.Errorf("%w: key: %v", ErrTxnRecordCorrupt, err)
	}
	if value == nil {
		return k.TransactionalID, nil, nil
	}
	m, err = txnmDecodeValue(k.TransactionalID, value)
	if err != nil {
		return k.TransactionalID, nil, fmt.Errorf("transactional id %q: %w", k.TransactionalID, err)
	}
	return k.TransactionalID, m, nil
}

func txnmDecodeValue(txnID string, value []byte) (*TxnMetadata, error) {
	if len(value) < 2 {
		return nil, fmt.Errorf("%w: value of %d bytes", ErrTxnRecordCorrupt, len(value))
	}
	if version := int16(binary.BigEndian.Uint16(value)); version < 0 || version > txnmMaxValueVersion {
		return nil, fmt.Errorf("%w: value version %d", ErrTxnRecordCorrupt, version)
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(value); err != nil {
		return nil, fmt.Errorf("%w: value: %v", ErrTxnRecordCorrupt, err)
	}
	// What no coordinator writes: Dead is a tombstone and PrepareEpochFence
	// is never persisted (Kafka's prepareTransitionTo refuses negative ids
	// and epochs).
	state := TxnState(v.State)
	switch {
	case state < TxnEmpty || state > TxnCompleteAbort:
		return nil, fmt.Errorf("%w: state %d", ErrTxnRecordCorrupt, v.State)
	case v.ProducerID < 0 || v.ProducerEpoch < 0:
		return nil, fmt.Errorf("%w: producer id %d epoch %d", ErrTxnRecordCorrupt, v.ProducerID, v.ProducerEpoch)
	case v.PreviousProducerID < txnmNoProducerID || v.NextProducerID < txnmNoProducerID:
		return nil, fmt.Errorf("%w: previous producer id %d, next %d", ErrTxnRecordCorrupt, v.PreviousProducerID, v.NextProducerID)
	}
	m := &TxnMetadata{
		TransactionalID:          txnID,
		ProducerID:               v.ProducerID,
		PrevProducerID:           v.PreviousProducerID,
		NextProducerID:           v.NextProducerID,
		ProducerEpoch:            v.ProducerEpoch,
		LastProducerEpoch:        txnmNoProducerEpoch,
		TimeoutMs:                v.TimeoutMillis,
		State:                    state,
		StartMs:                  v.StartTimestamp,
		LastUpdateMs:             v.LastUpdateTimestamp,
		ClientTransactionVersion: v.ClientTransactionVersion,
	}
	// Kafka ignores partitions listed for Empty, and writes none once the
	// markers are written: Complete* with partitions is not served either,
	// lest its next transaction send markers to them.
	if state != TxnEmpty && state != TxnCompleteCommit && state != TxnCompleteAbort {
		for _, tp := range v.Topics {
			for _, p := range tp.Partitions {
				m.Partitions = append(m.Partitions, TxnTopicPartition{Topic: tp.Topic, Partition: p})
			}
		}
		slices.SortFunc(m.Partitions, txnmComparePartitions)
		m.Partitions = slices.Compact(m.Partitions)
	}
	return m, nil
}
