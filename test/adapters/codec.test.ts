import t from 'tap'
import { decodeEnvelope, decodeMessage, encodeEnvelope, envelopePrefix, opEnvelopeParts, storedOpJson } from '../../adapters/redis/codec.js'
import { opFrame } from '../../lib/protocol/op-frame.js'
import type { Op } from '../../lib/types.js'

// Data chosen to confuse a text cut: quotes, escapes, the envelope's own markers, braces at the end.
const tricky: unknown[] = [
  null,
  'plain',
  'quote " and backslash \\\\ and "op":{"seq":1}',
  { op: { seq: 99 }, '"op":{"seq":': '}}}' },
  ['é', '🙂', '\u2028', { a: [{}] }],
  12.5
]

function op (data: unknown, i: number, sessionId: string | null = 's-1'): Op {
  return { project: 'doc.v2_-x', seq: 40 + i, id: `op-${i}`, userId: 'user "quoted" é', sessionId, data, ts: 1_795_000_000_000 + i }
}

/** The frame a hub serialises itself for an op it has no text for. */
const serialised = (o: Op): string => opFrame({ ...o })

t.test('an op envelope decodes to the same op, and its frame is the text the hub would serialise', async t => {
  for (const [i, data] of tricky.entries()) {
    for (const relay of [false, true]) {
      const original = op(data, i, i % 2 === 0 ? null : 's-1')
      const raw = encodeEnvelope('inst-a', relay ? { kind: 'op', epoch: 'e1', op: original, relay } : { kind: 'op', epoch: 'e1', op: original })
      const envelope = decodeEnvelope(raw)
      if (envelope?.message.kind !== 'op') { t.fail('not decoded as an op'); continue }
      t.strictSame({ ...envelope.message.op }, original, `data ${i}${relay ? ' (relay)' : ''}: same op`)
      t.equal(envelope.message.relay === true, relay, 'relay flag kept')
      t.equal(opFrame(envelope.message.op), serialised(original), `data ${i}${relay ? ' (relay)' : ''}: same frame text`)
      t.strictSame(JSON.parse(opFrame(envelope.message.op)), { type: 'op', ...original }, 'and the frame is the op frame of the protocol')
    }
  }
})

t.test('the script\'s envelope (parts around epoch and seq) decodes with the same frame', async t => {
  for (const [i, data] of tricky.entries()) {
    const original = op(data, i)
    const { head, middle, beforeStored } = opEnvelopeParts('inst-b', original.project)
    // As the APPEND script joins them.
    const raw = `${head}e9${middle}${original.seq}${beforeStored}${storedOpJson(original).slice(1)}}}`
    t.ok(raw.startsWith(envelopePrefix('inst-b')), 'starts with the origin\'s prefix (echoes are dropped unread)')
    const envelope = decodeEnvelope(raw)
    if (envelope?.message.kind !== 'op') { t.fail('not decoded as an op'); continue }
    t.equal(envelope.message.epoch, 'e9')
    t.strictSame({ ...envelope.message.op }, original)
    t.equal(opFrame(envelope.message.op), serialised(original), `data ${i}: same frame text`)
  }
})

t.test('anything else on the channel is ignored, not half-read', async t => {
  for (const raw of ['', 'nope', '{}', '[]', '{"o":"x","m":{"kind":"op","epoch":"e","op":{"seq":"1"}}}', '{"o":"x","m":{"kind":"other"}}', '{"o":1,"m":{"kind":"op"}}']) {
    t.equal(decodeEnvelope(raw), null, JSON.stringify(raw))
  }
  const member = decodeEnvelope(encodeEnvelope('i', { kind: 'member', event: 'join', member: { sessionId: 's', userId: 'u', presence: {}, joinedAt: 1 } }))
  t.equal(member?.message.kind, 'member', 'other kinds still decode')
})

t.test('a batch message decodes to each of its envelopes in order, each op with its frame; a single envelope as before', async t => {
  const ops = tricky.map((data, i) => op(data, i))
  const { head, middle, beforeStored } = opEnvelopeParts('inst-c', 'doc.v2_-x')
  // As the APPEND script joins a batch: each op's envelope, joined by newlines.
  const raw = ops.map(o => `${head}e7${middle}${o.seq}${beforeStored}${storedOpJson(o).slice(1)}}}`).join('\n')
  t.ok(raw.startsWith(envelopePrefix('inst-c')), 'starts with the origin\'s prefix (echoes are dropped unread)')
  t.equal(decodeEnvelope(raw), null, 'not one envelope: instances before batching ignore it')
  const envelopes = decodeMessage(raw)
  t.strictSame(envelopes.map(e => e.origin), ops.map(() => 'inst-c'))
  t.strictSame(envelopes.map(e => e.message.kind === 'op' ? { ...e.message.op } : null), ops, 'every op, in order')
  t.strictSame(envelopes.map(e => e.message.kind === 'op' ? opFrame(e.message.op) : null), ops.map(serialised), 'each with the frame text the hub would serialise')
  const single = encodeEnvelope('inst-d', { kind: 'op', epoch: 'e1', op: ops[1] as Op })
  t.strictSame(decodeMessage(single), [decodeEnvelope(single)], 'a single envelope is a message of one')
  t.strictSame(decodeMessage(`nope\n${single}\n{}`), [decodeEnvelope(single)], 'parts that are not envelopes are left out')
  t.strictSame(decodeMessage('nope'), [])
})
