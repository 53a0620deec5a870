/**
 * The Broadcaster contract: the JSDoc of ports/broadcaster.ts as tests.
 * Every adapter's test file runs it with three broadcasters on one bus, like
 * three instances on one Redis.
 *
 * Nothing here sleeps: a test awaits the message it expects, with a
 * deadline. To show that a message did *not* arrive, a test publishes a
 * marker after it from the same publisher to the same project (delivery is in
 * publish order per publisher and project) and checks, once the marker is in,
 * that the unwanted message is not.
 */
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { BroadcastMessage, Broadcaster } from '../../ports/broadcaster.js'
import { Recorder } from '../helpers/wait.js'

export interface BroadcasterHarness {
  readonly a: Broadcaster
  readonly b: Broadcaster
  readonly c: Broadcaster
  /** frees everything the factory made */
  readonly close: () => Promise<void>
}

export type BroadcasterFactory = () => Promise<BroadcasterHarness>

/** Deadline for 1,000 messages to cross the bus. */
const BULK_TIMEOUT_MS = 5000

let counter = 0

/** A project id unique across runs: a counter and a random suffix. */
function uniqueId (prefix: string): string {
  counter += 1
  return `${prefix}-${counter}-${randomBytes(4).toString('hex')}`
}

/** An op message named `label` (its op id), from `from`, numbered `n`. */
function opMessage (project: string, label: string, from = 'publisher', n = 0): BroadcastMessage {
  return {
    kind: 'op',
    epoch: 'epoch-1',
    op: { project, seq: n, id: label, userId: from, sessionId: `${from}-session`, data: { label, n }, ts: 1_700_000_000_000 + n }
  }
}

/** The op ids of the op messages received, in order; other kinds show as their kind. */
function labels (messages: readonly BroadcastMessage[]): string[] {
  return messages.map(message => message.kind === 'op' ? message.op.id : message.kind)
}

function hasLabel (...wanted: string[]): (messages: readonly BroadcastMessage[]) => boolean {
  return messages => {
    const got = labels(messages)
    return wanted.every(label => got.includes(label))
  }
}

export function broadcasterContract (t: Test, name: string, factory: BroadcasterFactory): void {
  t.test(`${name} fulfils the Broadcaster contract`, async t => {
    async function open (t: Test): Promise<BroadcasterHarness> {
      const harness = await factory()
      t.teardown(harness.close)
      return harness
    }

    t.test('delivers a message to every other broadcaster subscribed to the project', async t => {
      const { a, b, c } = await open(t)
      const project = uniqueId('project')
      const atA = new Recorder<BroadcastMessage>()
      const atC = new Recorder<BroadcastMessage>()
      await a.subscribe(project, atA.push)
      await c.subscribe(project, atC.push)
      const message = opMessage(project, 'hello', 'b')
      await b.publish(project, message)
      t.strictSame(await atA.until(hasLabel('hello'), 'the message at a'), [message])
      t.strictSame(await atC.until(hasLabel('hello'), 'the message at c'), [message])
    })

    t.test('never echoes a message to the publisher\'s own handler', async t => {
      const { a, b, c } = await open(t)
      const project = uniqueId('project')
      const atA = new Recorder<BroadcastMessage>()
      const atC = new Recorder<BroadcastMessage>()
      await a.subscribe(project, atA.push)
      await c.subscribe(project, atC.push)
      await a.publish(project, opMessage(project, 'from-a', 'a'))
      await b.publish(project, opMessage(project, 'marker', 'b'))
      await atC.until(hasLabel('from-a', 'marker'), 'both messages at c')
      await atA.until(hasLabel('marker'), 'the marker at a')
      t.strictSame(labels(atA.items), ['marker'], 'a did not get its own message')
    })

    t.test('does not deliver to a broadcaster not subscribed to the project', async t => {
      const { a, b, c } = await open(t)
      const project = uniqueId('project')
      const elsewhere = uniqueId('project')
      const atA = new Recorder<BroadcastMessage>()
      const atCElsewhere = new Recorder<BroadcastMessage>()
      await a.subscribe(project, atA.push)
      await c.subscribe(elsewhere, atCElsewhere.push)
      await b.publish(project, opMessage(project, 'before', 'b'))
      await atA.until(hasLabel('before'), 'the message at a, which is subscribed')

      const atCLater = new Recorder<BroadcastMessage>()
      await c.subscribe(project, atCLater.push)
      await b.publish(project, opMessage(project, 'marker', 'b'))
      await b.publish(elsewhere, opMessage(elsewhere, 'marker-elsewhere', 'b'))
      await atCLater.until(hasLabel('marker'), 'the marker at c')
      await atCElsewhere.until(hasLabel('marker-elsewhere'), 'the other project\'s marker at c')
      t.strictSame(labels(atCLater.items), ['marker'], 'c got nothing published before it subscribed')
      t.strictSame(labels(atCElsewhere.items), ['marker-elsewhere'], 'c\'s handler of another project got nothing of this one')
    })

    t.test('stops delivery after unsubscribe', async t => {
      const { a, b, c } = await open(t)
      const project = uniqueId('project')
      const before = new Recorder<BroadcastMessage>()
      const atC = new Recorder<BroadcastMessage>()
      await a.subscribe(project, before.push)
      await c.subscribe(project, atC.push)
      await b.publish(project, opMessage(project, 'subscribed', 'b'))
      await before.until(hasLabel('subscribed'), 'the first message at a')

      await a.unsubscribe(project)
      await b.publish(project, opMessage(project, 'unsubscribed', 'b'))
      await atC.until(hasLabel('unsubscribed'), 'the second message at c, still subscribed')

      // Subscribe again and publish a marker behind the unwanted message: had
      // it been delivered, it would be in `before` or ahead of the marker.
      const after = new Recorder<BroadcastMessage>()
      await a.subscribe(project, after.push)
      await b.publish(project, opMessage(project, 'marker', 'b'))
      await after.until(hasLabel('marker'), 'the marker at a')
      t.strictSame(labels(before.items), ['subscribed'], 'nothing reached the old handler after unsubscribe')
      t.strictSame(labels(after.items), ['marker'], 'the message published while unsubscribed never arrived')
    })

    t.test('preserves each publisher\'s order for 500 messages', async t => {
      const { a, b, c } = await open(t)
      const project = uniqueId('project')
      const atA = new Recorder<BroadcastMessage>()
      await a.subscribe(project, atA.push)
      const sends: Array<Promise<void>> = []
      for (let n = 0; n < 500; n++) {
        sends.push(b.publish(project, opMessage(project, `b-${n}`, 'b', n)))
        sends.push(c.publish(project, opMessage(project, `c-${n}`, 'c', n)))
      }
      await Promise.all(sends)
      await atA.until(items => items.length >= 1000, '1,000 messages at a', BULK_TIMEOUT_MS)
      const expected = Array.from({ length: 500 }, (_, n) => n)
      for (const from of ['b', 'c']) {
        const got = atA.items.flatMap(message => message.kind === 'op' && message.op.userId === from ? [message.op.seq] : [])
        t.strictSame(got, expected, `${from}'s messages arrived once each, in publish order`)
      }
    })

    t.test('carries op, member and presence messages unchanged', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const atA = new Recorder<BroadcastMessage>()
      await a.subscribe(project, atA.push)
      const messages: BroadcastMessage[] = [
        {
          kind: 'op',
          epoch: 'epoch-ü',
          op: {
            project,
            seq: 7,
            id: 'op-7',
            userId: 'user-é',
            sessionId: null,
            data: { nested: { list: [1, 'two', null, { deep: true }], empty: {} }, text: '日本語 𝄞 👩‍👩‍👧 "q" \\', n: 0.1 + 0.2 },
            ts: 1_700_000_000_123
          }
        },
        {
          kind: 'op',
          epoch: 'epoch-ü',
          op: { project, seq: 8, id: 'op-8', userId: 'user-1', sessionId: 'session-1', data: null, ts: 1_700_000_000_124 }
        },
        {
          kind: 'member',
          event: 'join',
          member: { sessionId: 'session-1', userId: 'user-1', presence: { cursor: { x: 1, y: 2 }, name: 'Zoë' }, joinedAt: 1_700_000_000_000 }
        },
        { kind: 'member', event: 'leave', member: { sessionId: 'session-2', userId: 'user-2', presence: {}, joinedAt: 1 } },
        { kind: 'presence', sessionId: 'session-1', userId: 'user-1', state: { selection: [1, 5], typing: true, color: null } }
      ]
      for (const message of messages) await b.publish(project, message)
      t.strictSame(await atA.until(items => items.length >= messages.length, 'every message at a'), messages)
    })

    t.test('hands each subscriber its own copy of a message', async t => {
      const { a, b, c } = await open(t)
      const project = uniqueId('project')
      const data = { text: 'original', list: [1, 2] }
      const message = {
        kind: 'op' as const,
        epoch: 'epoch-1',
        op: { project, seq: 1, id: 'shared', userId: 'b', sessionId: 'b-session', data, ts: 1 }
      }
      const expected = structuredClone(message)
      // a's handler scribbles on what it receives.
      const atA = new Recorder<BroadcastMessage>()
      await a.subscribe(project, received => {
        if (received.kind === 'op') {
          const got = received.op.data as typeof data
          got.text = 'changed by a'
          got.list.push(3)
        }
        atA.push(received)
      })
      const atC = new Recorder<BroadcastMessage>()
      await c.subscribe(project, atC.push)
      await b.publish(project, message)
      const [copyAtA] = await atA.until(items => items.length >= 1, 'the message at a')
      const [copyAtC] = await atC.until(items => items.length >= 1, 'the message at c')
      t.strictSame(copyAtC, expected, 'c\'s copy is untouched by a')
      t.not(copyAtA, copyAtC, 'a and c got different objects')
      t.not(copyAtC, message, 'c did not get the publisher\'s object')
      data.text = 'changed by the publisher'
      t.strictSame(copyAtC, expected, 'c\'s copy is untouched by the publisher')
    })

    t.test('takes the message as it is when publish is called', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const data = { text: 'original', list: [1, 2] }
      const message = {
        kind: 'op' as const,
        epoch: 'epoch-1',
        op: { project, seq: 1, id: 'reused', userId: 'b', sessionId: 'b-session', data, ts: 1 }
      }
      const expected = structuredClone(message)
      const atA = new Recorder<BroadcastMessage>()
      await a.subscribe(project, atA.push)
      const sent = b.publish(project, message)
      // The publisher reuses its object before the publish settles.
      data.text = 'changed by the publisher'
      data.list.push(3)
      await sent
      t.strictSame(await atA.until(items => items.length >= 1, 'the message at a'), [expected])
    })

    t.test('replaces the handler when the project is subscribed again', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const first = new Recorder<BroadcastMessage>()
      const second = new Recorder<BroadcastMessage>()
      await a.subscribe(project, first.push)
      await a.subscribe(project, second.push)
      await b.publish(project, opMessage(project, 'one', 'b'))
      await b.publish(project, opMessage(project, 'marker', 'b'))
      t.strictSame(labels(await second.until(hasLabel('marker'), 'both messages at the new handler')), ['one', 'marker'])
      t.strictSame(first.items, [], 'the replaced handler got nothing')
    })

    t.test('lists the subscribed projects and drops unsubscribed ones', async t => {
      const { a } = await open(t)
      const first = uniqueId('project')
      const second = uniqueId('project')
      const ignore = (): void => {}
      t.strictSame(await a.subscriptions(), [], 'none at first')
      await a.subscribe(first, ignore)
      await a.subscribe(second, ignore)
      await a.subscribe(first, ignore)
      t.strictSame([...await a.subscriptions()].sort(), [first, second].sort(), 'each project once')
      await a.unsubscribe(first)
      t.strictSame(await a.subscriptions(), [second], 'the unsubscribed project is gone')
      await t.resolves(a.unsubscribe(first), 'unsubscribing again is fine')
      await t.resolves(a.unsubscribe(uniqueId('project')), 'unsubscribing a project never subscribed is fine')
      await a.unsubscribe(second)
      t.strictSame(await a.subscriptions(), [], 'none at the end')
    })

    t.test('resolves a publish to a project nobody subscribed to', async t => {
      const { b } = await open(t)
      const project = uniqueId('project')
      await t.resolves(b.publish(project, opMessage(project, 'lonely', 'b')))
    })

    t.test('closes idempotently and unsubscribes everything', async t => {
      const { a, b, c } = await open(t)
      const project = uniqueId('project')
      const atA = new Recorder<BroadcastMessage>()
      const atC = new Recorder<BroadcastMessage>()
      await a.subscribe(project, atA.push)
      await a.subscribe(uniqueId('project'), atA.push)
      await c.subscribe(project, atC.push)
      await t.resolves(a.close(), 'first close')
      await t.resolves(a.close(), 'second close')
      t.strictSame(await a.subscriptions(), [], 'no subscription is left')
      await b.publish(project, opMessage(project, 'after-close', 'b'))
      await b.publish(project, opMessage(project, 'marker', 'b'))
      await atC.until(hasLabel('after-close', 'marker'), 'both messages at c')
      t.strictSame(atA.items, [], 'the closed broadcaster got nothing')
    })
  })
}
