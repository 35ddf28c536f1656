// kafkajs over SASL_SSL with SCRAM-SHA-512 for .ci/security.sh: produces 50
// records ("kafkajs-NNN") to TOPIC and consumes them back with a group.
// Usage: node kafkajs-sasl.js BROKER CA_FILE USER PASSWORD TOPIC
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const [broker, caFile, username, password, topic] = process.argv.slice(2)
const kafka = new Kafka({
  clientId: 'chronik-ci-kafkajs-sasl',
  brokers: [broker],
  ssl: { ca: [fs.readFileSync(caFile, 'utf-8')] },
  sasl: { mechanism: 'scram-sha-512', username, password },
  logLevel: logLevel.WARN
})

async function main () {
  const producer = kafka.producer()
  await producer.connect()
  const messages = []
  for (let i = 1; i <= 50; i++) messages.push({ value: `kafkajs-${String(i).padStart(3, '0')}` })
  await producer.send({ topic, messages })
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: 'ci-kafkajs-sasl' })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const seen = new Set()
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed ${seen.size} of 50 records`)), 60000)
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString())
        if (seen.size === 50) { clearTimeout(timer); resolve() }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  console.log('security: kafkajs: 50 records produced and consumed over SASL_SSL with SCRAM-SHA-512')
}

main().catch(e => { console.error('kafkajs-sasl:', e); process.exit(1) })
