import t from 'tap'
import { Connection } from '../../lib/hub/connection.js'
import { LocalMember } from '../../lib/hub/project.js'
import { TokenBucket } from '../../lib/hub/rate-limiter.js'
import type { Identity, Transport } from '../../lib/hub/transport.js'

// What a connection holds before it needs it: an idle instance keeps tens of thousands of them.

const transport = {} as unknown as Transport
const identity: Identity = { userId: 'u', allows: () => true }
const sink = (): void => {}
const connection = (id: string): Connection =>
  new Connection(id, transport, identity, 'user:u', { bucket: new TokenBucket(10, 10, 0) }, sink)

t.test('a connection that joined nothing shares one empty projects map, and its chains start settled', async (t) => {
  const a = connection('a')
  const b = connection('b')
  t.equal(a.projects.size, 0, 'no projects')
  t.equal(a.projects, b.projects, 'the same empty map for both: no table of their own')
  t.equal(a.chain, b.chain, 'one settled promise for every chain')
  t.equal(a.chain, a.checks, 'and for the checks')
  await a.chain
  t.equal(a.abuse, undefined, 'no abuse tracker before a frame is dropped')
})

t.test('joined and left keep the connection\'s own map; the last leave lets it go', async (t) => {
  const a = connection('a')
  const b = connection('b')
  const m1 = new LocalMember(a, 's1', 'u', {}, 0)
  const m2 = new LocalMember(a, 's2', 'u', {}, 0)
  a.joined('p1', m1)
  t.equal(a.projects.get('p1'), m1, 'joined p1')
  t.equal(b.projects.size, 0, 'another connection still has none')
  t.not(a.projects, b.projects, 'its own map')
  a.joined('p2', m2)
  t.same([...a.projects.keys()], ['p1', 'p2'], 'two projects, in join order')
  a.left('p1')
  t.same([...a.projects.keys()], ['p2'], 'p1 left')
  a.left('p1')
  t.equal(a.projects.size, 1, 'leaving a project it is not in changes nothing')
  a.left('p2')
  t.equal(a.projects.size, 0, 'the last one left')
  t.equal(a.projects, b.projects, 'back to the shared empty map')
  a.joined('p3', m1)
  t.equal(a.projects.get('p3'), m1, 'a join after that makes a map again')
  b.left('p3')
  t.equal(b.projects.size, 0, 'a leave on a connection that joined nothing changes nothing')
})
