// What one worker checks during a phase, per receiving client: each op of
// another member arrives once (losses and duplicates by sender and op
// counter), Flow's seqs increase per project, each sender's ops keep their
// order (FIFO), and how late it is (send time in the op's data to receipt).
import { Histogram } from './hist.mjs'

export class Tracker {
  /**
   * @param {number} phase ops of other phases count as stray
   * @param {number} clientCount receivers (slots 0..clientCount-1)
   * @param {number} members members per project (data.m is the sender's member index)
   */
  constructor (phase, clientCount, members) {
    this.phase = phase
    this.members = members
    this.latency = new Histogram()
    this.ack = new Histogram()
    this.lag = new Histogram()
    this.sent = new Int32Array(clientCount)
    this.acked = 0
    this.unique = new Int32Array(clientCount)
    // per receiver and sender: the next op counter expected and the highest seen
    this.next = new Int32Array(clientCount * members)
    this.highest = new Int32Array(clientCount * members).fill(-1)
    /** receiver * members + sender -> counters seen ahead of `next` */
    this.ahead = new Map()
    this.lastSeq = new Float64Array(clientCount)
    this.duplicates = 0
    this.fifoViolations = 0
    this.orderViolations = 0
    this.stray = 0
    this.resets = 0
    this.errors = {}
    this.closed = 0
    this.lastDeliveryAt = 0
    /** op id -> send time, until acked */
    this.pendingAcks = new Map()
  }

  /** Flow's `reset` to receiver `slot`: seqs go on from `seq` in a new epoch (the ops it skipped count as lost). */
  reset (slot, seq) {
    this.resets++
    this.lastSeq[slot] = seq
  }

  /** One op delivered to receiver `slot`: data = { m, k, ph, t }, seq from Flow (else undefined). */
  receive (slot, data, seq, now) {
    this.lastDeliveryAt = now
    if (data === null || typeof data !== 'object' || data.ph !== this.phase) { this.stray++; return }
    if (seq !== undefined) {
      if (seq <= this.lastSeq[slot]) this.orderViolations++
      else this.lastSeq[slot] = seq
    }
    const key = slot * this.members + data.m
    const k = data.k
    const next = this.next[key]
    if (k < next) { this.duplicates++; return }
    const ahead = this.ahead.get(key)
    if (k === next) {
      let n = next + 1
      if (ahead !== undefined) {
        while (ahead.delete(n)) n++
        if (ahead.size === 0) this.ahead.delete(key)
      }
      this.next[key] = n
    } else if (ahead?.has(k) === true) {
      this.duplicates++
      return
    } else if (ahead === undefined) {
      this.ahead.set(key, new Set([k]))
    } else {
      ahead.add(k)
    }
    if (k < this.highest[key]) this.fifoViolations++
    else this.highest[key] = k
    this.unique[slot]++
    this.latency.record(now - data.t)
  }
}
