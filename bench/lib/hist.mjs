// A log-linear latency histogram in microseconds: exact below 1,024 µs, then
// 128 sub-buckets per power of two (under 0.8 % error). Fixed size, so a
// worker can record millions of samples and ship the counts to the main
// thread as one Uint32Array; histograms merge by adding counts.

const LINEAR = 1024
const SUB_BITS = 7
const SUB = 1 << SUB_BITS
const TOP_POWER = 40 // ~12.7 days in µs: anything above lands in the last bucket
export const BUCKETS = LINEAR + (TOP_POWER - 10) * SUB

function bucketOf (us) {
  if (us < LINEAR) return us < 0 ? 0 : Math.floor(us)
  const v = Math.floor(us)
  const power = v < 2 ** 31 ? 31 - Math.clz32(v) : Math.floor(Math.log2(v))
  if (power >= TOP_POWER) return BUCKETS - 1
  const mantissa = Math.floor(v / 2 ** (power - SUB_BITS)) & (SUB - 1)
  return LINEAR + (power - 10) * SUB + mantissa
}

function valueOf (bucket) {
  if (bucket < LINEAR) return bucket
  const power = 10 + Math.floor((bucket - LINEAR) / SUB)
  const mantissa = (bucket - LINEAR) % SUB
  const low = 2 ** power + mantissa * 2 ** (power - SUB_BITS)
  return low + 2 ** (power - SUB_BITS) / 2
}

export class Histogram {
  constructor (counts = new Uint32Array(BUCKETS), stats = { n: 0, sum: 0, max: 0, negative: 0 }) {
    this.counts = counts
    this.n = stats.n
    this.sum = stats.sum
    this.max = stats.max
    this.negative = stats.negative
  }

  /** Records one sample in milliseconds (negative ones, from clock skew, count as 0). */
  record (ms) {
    const us = ms * 1000
    if (us < 0) this.negative++
    this.counts[bucketOf(us)]++
    this.n++
    this.sum += ms
    if (ms > this.max) this.max = ms
  }

  add (other) {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] += other.counts[i]
    this.n += other.n
    this.sum += other.sum
    this.negative += other.negative
    if (other.max > this.max) this.max = other.max
    return this
  }

  /** The value (ms) at quantile q in [0, 1]. */
  quantile (q) {
    if (this.n === 0) return null
    const rank = Math.max(1, Math.ceil(q * this.n))
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]
      if (seen >= rank) return Math.min(valueOf(i) / 1000, this.max)
    }
    return this.max
  }

  summary () {
    if (this.n === 0) return { n: 0, mean: null, p50: null, p90: null, p99: null, p999: null, max: null }
    const r = (x) => Math.round(x * 1000) / 1000
    return {
      n: this.n,
      mean: r(this.sum / this.n),
      p50: r(this.quantile(0.5)),
      p90: r(this.quantile(0.9)),
      p99: r(this.quantile(0.99)),
      p999: r(this.quantile(0.999)),
      max: r(this.max),
      negative: this.negative
    }
  }

  /** A plain object for postMessage (the counts array is transferable). */
  toMessage () {
    return { counts: this.counts, n: this.n, sum: this.sum, max: this.max, negative: this.negative }
  }

  static fromMessage (m) {
    return new Histogram(m.counts, m)
  }
}
