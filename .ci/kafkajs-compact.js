// kafkajs for .ci/topicconfig.sh, compacted topics. Two modes:
//   node kafkajs-compact.js BROKER TOPIC create CODEC
//     creates TOPIC with cleanup.policy=compact and compression.type=CODEC (segment.ms=100,
//     min.cleanable.dirty.ratio=0.01, delete.retention.ms=0) and checks that
//     DescribeConfigs reports the policy set on the topic;
//   node kafkajs-compact.js BROKER TOPIC read LAST
//     consumes TOPIC from the start through offset LAST and prints
//     "offset key value" per record (value "<null>" for a tombstone).
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const [broker, topic, mode, arg] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'chronik-ci-kafkajs-compact', brokers: [broker], logLevel: logLevel.NOTHING })

async function create () {
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    waitForLeaders: true,
    topics: [{
      topic,
      numPartitions: 1,
      configEntries: [
        { name: 'cleanup.policy', value: 'compact' },
        { name: 'compression.type', value: arg },
        { name: 'segment.ms', value: '100' },
        { name: 'min.cleanable.dirty.ratio', value: '0.01' },
        { name: 'delete.retention.ms', value: '0' }
      ]
    }]
  })
  if (!created) throw new Error(`topic ${topic} was not created`)
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }]
  })
  const cp = resources[0].configEntries.find(e => e.configName === 'cleanup.policy')
  if (!cp || cp.configValue !== 'compact' || cp.isDefault) throw new Error(`cleanup.policy described as ${JSON.stringify(cp)}`)
  await admin.disconnect()
  console.log(`kafkajs: created ${topic} with cleanup.policy=compact, compression.type=${arg}`)
}

async function read () {
  const lastOffset = BigInt(arg)
  const consumer = kafka.consumer({ groupId: `ci-compact-${Date.now()}`, maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const lines = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no offset ${arg} within 60s`)), 60000)
    consumer.run({
      eachMessage: async ({ message }) => {
        const v = message.value === null ? '<null>' : message.value.toString()
        lines.push(`${message.offset} ${message.key.toString()} ${v}`)
        if (BigInt(message.offset) >= lastOffset) { clearTimeout(timer); resolve() }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  process.stdout.write(lines.join('\n') + '\n')
}

(mode === 'create' ? create() : read()).catch(e => { console.error('kafkajs-compact:', e); process.exit(1) })
