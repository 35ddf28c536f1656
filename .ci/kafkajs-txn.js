// kafkajs transactions for .ci/txn.sh: one transaction sends 50 records
// ("commit-NNN") and the offset 7 of partition 0 of INPUT for GROUP
// (sendOffsets), then commits; a second sends 50 ("abort-NNN") and aborts.
// Usage: node kafkajs-txn.js BROKER TOPIC INPUT GROUP
const { Kafka, logLevel } = require('kafkajs')

const [broker, topic, input, groupId] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'chronik-ci-kafkajs-txn', brokers: [broker], logLevel: logLevel.WARN })
const producer = kafka.producer({ transactionalId: 'ci-kafkajs', idempotent: true, maxInFlightRequests: 1 })

function records (prefix) {
  const out = []
  for (let i = 1; i <= 50; i++) out.push({ value: `${prefix}-${String(i).padStart(3, '0')}` })
  return out
}

async function main () {
  await producer.connect()
  const t1 = await producer.transaction()
  await t1.send({ topic, messages: records('commit') })
  await t1.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: input, partitions: [{ partition: 0, offset: '7' }] }] })
  await t1.commit()
  const t2 = await producer.transaction()
  await t2.send({ topic, messages: records('abort') })
  await t2.abort()
  await producer.disconnect()
  console.log('kafkajs: committed one transaction, aborted one')
}

main().catch(e => { console.error('kafkajs-txn:', e); process.exit(1) })
