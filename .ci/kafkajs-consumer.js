// A kafkajs group consumer for .ci/groups.sh: prints "partition offset
// value" for every message, commits as kafkajs does by default (after each batch), and
// leaves the group on SIGTERM. Usage: node kafkajs-consumer.js BROKERS GROUP TOPIC
// (BROKERS: host:port[,host:port...])
const { Kafka, logLevel } = require('kafkajs')

const [broker, groupId, topic] = process.argv.slice(2)
const kafka = new Kafka({
  clientId: 'chronik-ci-kafkajs',
  brokers: broker.split(','),
  logLevel: logLevel.WARN,
  // Ride out a broker restart.
  retry: { retries: 50, initialRetryTime: 100, maxRetryTime: 1000 },
})
const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 200 })

async function main () {
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      process.stdout.write(`${partition} ${message.offset} ${message.value.toString()}\n`)
    },
  })
}

let stopping = false
async function stop (code) {
  if (stopping) return
  stopping = true
  try {
    await consumer.disconnect()
  } finally {
    process.exit(code)
  }
}

consumer.on(consumer.events.CRASH, e => {
  console.error('kafkajs crash:', e.payload.error && e.payload.error.message, 'restart:', e.payload.restart)
})
process.on('SIGTERM', () => stop(0))
process.on('SIGINT', () => stop(0))
main().catch(e => {
  console.error('kafkajs consumer failed:', e)
  stop(1)
})
