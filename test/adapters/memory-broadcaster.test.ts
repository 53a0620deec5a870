import t from 'tap'
import type { BroadcastMessage } from '../../ports/broadcaster.js'
import { MemoryBroadcaster, MemoryBus, createMemoryBroadcaster } from '../../adapters/memory/broadcaster.js'
import { broadcasterContract } from '../contracts/broadcaster.js'
import { Recorder } from '../helpers/wait.js'

broadcasterContract(t, 'MemoryBroadcaster', async () => {
  const bus = new MemoryBus()
  const [a, b, c] = [createMemoryBroadcaster(bus), createMemoryBroadcaster(bus), createMemoryBroadcaster(bus)]
  return { a, b, c, close: async () => { await Promise.all([a.close(), b.close(), c.close()]) } }
})

function message (label: string): BroadcastMessage {
  return { kind: 'op', epoch: 'e', op: { project: 'p', seq: 1, id: label, userId: 'u', sessionId: null, data: null, ts: 1 } }
}

t.test('MemoryBroadcaster gives each broadcaster its own bus by default', async t => {
  const alone = new MemoryBroadcaster()
  const otherAlone = new MemoryBroadcaster()
  const bus = new MemoryBus()
  const listener = new MemoryBroadcaster(bus)
  const publisher = new MemoryBroadcaster(bus)
  t.teardown(async () => { await Promise.all([alone, otherAlone, listener, publisher].map(async b => { await b.close() })) })
  const atAlone = new Recorder<BroadcastMessage>()
  const atListener = new Recorder<BroadcastMessage>()
  await alone.subscribe('p', atAlone.push)
  await listener.subscribe('p', atListener.push)
  // Were default buses one shared bus, `alone` would get the first message
  // before `listener` gets the second: delivery follows publish order.
  await otherAlone.publish('p', message('unseen'))
  await publisher.publish('p', message('marker'))
  await atListener.until(items => items.length >= 1, 'the marker')
  t.strictSame(atAlone.items, [], 'a broadcaster on its own bus hears nothing from another default bus')
})

t.test('MemoryBroadcaster rejects subscribe and publish after close', async t => {
  const broadcaster = new MemoryBroadcaster()
  await broadcaster.close()
  await t.rejects(broadcaster.subscribe('p', () => {}), /closed/)
  await t.rejects(broadcaster.publish('p', message('late')), /closed/)
})
