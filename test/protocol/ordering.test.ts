import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect, type TestClient } from '../helpers/client.js'
import { collect, opsOf, range, until } from '../helpers/protocol.js'

const PROJECTS = ['order-a', 'order-b', 'order-c']
const SENDERS = 4
const OPS_PER_SENDER = 250

t.test('1,000 concurrent ops from 4 senders over 3 projects: contiguous seqs, in order, no gap, no duplicate', async (t) => {
  const server = await startServer(t)
  const senders = await Promise.all(range(1, SENDERS).map(async (n) => await connect(t, `${server.ws}?userId=s${n}`, { timeoutMs: 15_000 })))
  const observer = await connect(t, `${server.ws}?userId=observer`)
  const sessions = new Map<TestClient, Map<string, string>>()
  for (const client of [...senders, observer]) {
    const mine = new Map<string, string>()
    for (const p of PROJECTS) mine.set(p, (await client.join(p)).sessionId as string)
    sessions.set(client, mine)
  }

  // Every sender fires all its ops at once, spread over the projects; the
  // server reads the four sockets interleaved.
  const sent = new Map<TestClient, Array<{ ref: string, project: string }>>()
  for (let i = 0; i < OPS_PER_SENDER; i++) {
    senders.forEach((client, s) => {
      const project = PROJECTS[(i + s) % PROJECTS.length] as string
      const ref = `s${s}-${i}`
      const list = sent.get(client) ?? []
      list.push({ ref, project })
      sent.set(client, list)
      client.send({ type: 'op', project, id: ref, data: { s, i }, ref })
    })
  }
  const total = new Map(PROJECTS.map((p) => [p, [...sent.values()].flat().filter((op) => op.project === p).length]))
  t.equal([...total.values()].reduce((a, b) => a + b, 0), SENDERS * OPS_PER_SENDER)

  const acks = await Promise.all(senders.map(async (client) => await collect(client, (f) => f.type === 'ack', OPS_PER_SENDER, 'acks', 15_000)))
  for (const client of [...senders, observer]) {
    await until(client, () => PROJECTS.every((p) => {
      const own = (sent.get(client) ?? []).filter((op) => op.project === p).length
      return opsOf(client, p).length >= (total.get(p) as number) - own
    }), 'every other sender\'s ops', 15_000)
  }

  // Seqs per project: the acks of all senders together are 1..N exactly.
  const seqOfId = new Map<string, Map<string, number>>(PROJECTS.map((p) => [p, new Map()]))
  for (const list of acks) for (const ack of list) seqOfId.get(ack.project as string)?.set(ack.id as string, ack.seq as number)
  for (const p of PROJECTS) {
    const seqs = [...(seqOfId.get(p) as Map<string, number>).values()].sort((a, b) => a - b)
    t.same(seqs, range(1, total.get(p) as number), `${p}: acked seqs are 1..${total.get(p)}, no gap, no repeat`)
  }

  senders.forEach((client, s) => {
    const order = (sent.get(client) ?? []).map((op) => op.ref)
    const got = (acks[s] ?? [])
    t.same(got.map((a) => a.ref), order, `sender ${s}: acks come in the order the ops were sent`)
    for (const p of PROJECTS) {
      const seqs = got.filter((a) => a.project === p).map((a) => a.seq as number)
      t.ok(seqs.every((seq, i) => i === 0 || seq > (seqs[i - 1] as number)), `sender ${s}, ${p}: ack seqs increase`)
    }
  })

  for (const client of [...senders, observer]) {
    const name = client === observer ? 'observer' : `sender ${senders.indexOf(client)}`
    const ownAcks = client === observer ? [] : acks[senders.indexOf(client)] ?? []
    for (const p of PROJECTS) {
      const ops = opsOf(client, p)
      const own = sessions.get(client)?.get(p)
      t.notOk(ops.some((op) => op.sessionId === own), `${name}, ${p}: none of its own ops came back`)
      t.same(ops.map((op) => op.seq), [...ops.map((op) => op.seq)].sort((a, b) => a - b), `${name}, ${p}: ops arrive in seq order`)
      const union = ops.map((op) => op.seq).concat(ownAcks.filter((a) => a.project === p).map((a) => a.seq as number)).sort((a, b) => a - b)
      t.same(union, range(1, total.get(p) as number), `${name}, ${p}: received ops plus own acks are 1..N exactly`)
      t.ok(ops.every((op) => seqOfId.get(p)?.get(op.id) === op.seq), `${name}, ${p}: each op carries the seq its sender was acked`)
    }
  }
})
