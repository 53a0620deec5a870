import t from 'tap'
import { randomId } from '../../lib/ids.js'

t.test('random ids are URL-safe, of the asked size, and never repeat across refills of the pool', async (t) => {
  const seen = new Set<string>()
  let wrongSize = 0
  // 20,000 ids of 9 and 12 bytes: 210,000 bytes, some 50 refills of the 4 KiB pool.
  for (let i = 0; i < 20_000; i++) {
    const bytes = i % 2 === 0 ? 9 : 12
    const id = randomId(bytes)
    if (Buffer.from(id, 'base64url').length !== bytes || !/^[A-Za-z0-9_-]+$/.test(id)) wrongSize++
    seen.add(id)
  }
  t.equal(wrongSize, 0, 'every id is base64url of the asked size')
  t.equal(seen.size, 20_000, 'no id handed out twice')
  t.match(randomId(), /^[A-Za-z0-9_-]{16}$/, 'the default: 12 bytes, 16 characters of base64url')
})

t.test('an impossible size is refused', async (t) => {
  t.throws(() => randomId(0), RangeError)
  t.throws(() => randomId(4097), RangeError)
  t.throws(() => randomId(1.5), RangeError)
})
