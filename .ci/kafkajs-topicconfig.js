// kafkajs admin for .ci/topicconfig.sh: creates TOPIC with
// compression.type=zstd (configEntries), checks that DescribeConfigs reports
// it set on the topic (and min.insync.replicas at its default), and that a
// create with compression.type=brotli is refused with INVALID_CONFIG.
// Usage: node kafkajs-topicconfig.js BROKER TOPIC
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const [broker, topic] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'chronik-ci-kafkajs-topicconfig', brokers: [broker], logLevel: logLevel.NOTHING })
const admin = kafka.admin()

async function main () {
  await admin.connect()
  const created = await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: 1, configEntries: [{ name: 'compression.type', value: 'zstd' }] }]
  })
  if (!created) throw new Error(`topic ${topic} was not created`)
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }]
  })
  const entries = Object.fromEntries(resources[0].configEntries.map(e => [e.configName, e]))
  const ct = entries['compression.type']
  if (!ct || ct.configValue !== 'zstd' || ct.isDefault) throw new Error(`compression.type described as ${JSON.stringify(ct)}`)
  const isr = entries['min.insync.replicas']
  if (!isr || isr.configValue !== '1' || !isr.isDefault) throw new Error(`min.insync.replicas described as ${JSON.stringify(isr)}`)
  let refused = null
  try {
    await admin.createTopics({ topics: [{ topic: `${topic}-bad`, configEntries: [{ name: 'compression.type', value: 'brotli' }] }] })
  } catch (e) {
    refused = e
  }
  const codes = refused && refused.errors ? refused.errors.map(e => e.type) : [refused && refused.type]
  if (!codes.includes('INVALID_CONFIG')) throw new Error(`compression.type=brotli: ${refused}, want INVALID_CONFIG`)
  await admin.disconnect()
  console.log(`kafkajs: created ${topic} with compression.type=zstd (${resources[0].configEntries.length} configs described), brotli refused`)
}

main().catch(e => { console.error('kafkajs-topicconfig:', e); process.exit(1) })
