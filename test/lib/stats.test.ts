import t from 'tap'
import { Histogram } from '../../lib/stats.js'

t.test('a histogram counts each observation in the first bucket that holds it', async (t) => {
  const h = new Histogram([1, 5])
  h.observe(1)
  h.observe(3)
  h.observe(9)
  t.same(h.counts, [1, 1], 'above the last bound only the count and the sum see it')
  t.equal(h.count, 3)
  t.equal(h.sum, 13)
})

t.test('a histogram\'s listener sees every later observation until it unsubscribes', async (t) => {
  const h = new Histogram([1, 5])
  h.observe(2)
  const seen: number[] = []
  const unsubscribe = h.subscribe((value) => { seen.push(value) })
  h.observe(3)
  h.observe(7)
  unsubscribe()
  h.observe(4)
  t.same(seen, [3, 7])
  t.equal(h.count, 4)
})
