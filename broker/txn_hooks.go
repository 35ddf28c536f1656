package broker

// verifyTxnPartition is called for every transactional batch of a Produce
// before it is queued on its partition: KIP-890's defence against hanging
// transactions asks the transaction coordinator whether the partition is
// part of the producer's ongoing transaction before the write is accepted
// (Kafka's AddPartitionsToTxn verify-only form). An error refuses the
// batch's request with the Kafka code it wraps.
//
// This is a stub that accepts every batch: the transaction coordinator
// replaces it with the verification.
func (b *Broker) verifyTxnPartition(txnID string, producerID int64, epoch int16, topic string, partition int32) error {
	return nil
}
