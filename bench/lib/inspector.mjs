// The V8 inspector of a server under test (started with `--inspect`, see
// startCluster's `inspect`): a full garbage collection before memory is
// read, the heap's size, and heap snapshots streamed to a file.
import { createWriteStream, readFileSync } from 'node:fs'
import WebSocket from 'ws'
import { sleep } from './proc.mjs'

/** Waits for the process' log to name its inspector's URL, and connects to it. */
export async function openInspector (logFile, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  let url = null
  while (url === null) {
    try {
      url = /Debugger listening on (ws:\/\/\S+)/.exec(readFileSync(logFile, 'utf8'))?.[1] ?? null
    } catch { /* not written yet */ }
    if (url !== null) break
    if (Date.now() > deadline) throw new Error(`no inspector URL in ${logFile}`)
    await sleep(100)
  }
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 2 ** 30 })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  return new Inspector(ws)
}

export class Inspector {
  #ws
  #next = 1
  #pending = new Map()
  #listeners = new Map()

  constructor (ws) {
    this.#ws = ws
    ws.on('message', (raw) => {
      const m = JSON.parse(raw)
      if (m.id !== undefined) {
        const p = this.#pending.get(m.id)
        this.#pending.delete(m.id)
        if (m.error !== undefined) p?.reject(new Error(`${m.error.message} (${m.error.code})`))
        else p?.resolve(m.result)
      } else {
        this.#listeners.get(m.method)?.(m.params)
      }
    })
    ws.on('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error('inspector closed'))
      this.#pending.clear()
    })
  }

  call (method, params = {}, timeoutMs = 600_000) {
    const id = this.#next++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.#pending.delete(id); reject(new Error(`${method} timed out`)) }, timeoutMs)
      this.#pending.set(id, {
        resolve: (r) => { clearTimeout(timer); resolve(r) },
        reject: (e) => { clearTimeout(timer); reject(e) }
      })
      this.#ws.send(JSON.stringify({ id, method, params }))
    })
  }

  /** Two full collections (the second collects what finalizers of the first let go). */
  async collectGarbage () {
    await this.call('HeapProfiler.collectGarbage')
    await this.call('HeapProfiler.collectGarbage')
  }

  /** V8's heap: { usedSize, totalSize } in bytes (Runtime.getHeapUsage). */
  async heapUsage () {
    return await this.call('Runtime.getHeapUsage')
  }

  /** Writes a heap snapshot (after a full collection, as V8 takes it) to `file`. */
  async heapSnapshot (file) {
    const out = createWriteStream(file)
    this.#listeners.set('HeapProfiler.addHeapSnapshotChunk', ({ chunk }) => { out.write(chunk) })
    try {
      await this.call('HeapProfiler.enable')
      await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false })
    } finally {
      this.#listeners.delete('HeapProfiler.addHeapSnapshotChunk')
      await new Promise((resolve) => out.end(resolve))
    }
    await this.call('HeapProfiler.disable').catch(() => {})
    return file
  }

  /** Starts V8's sampling heap profiler, counting what collections freed too (every allocation, live or not). */
  async startAllocationSampling (samplingInterval = 16384) {
    await this.call('HeapProfiler.enable')
    await this.call('HeapProfiler.startSampling', { samplingInterval, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  }

  /**
   * Stops the sampling heap profiler: bytes allocated since the start by
   * allocating function (self), the `top` largest, each as
   * { fn: "name file:line", bytes }, and the total.
   */
  async stopAllocationSampling (top = 25) {
    const { profile } = await this.call('HeapProfiler.stopSampling')
    await this.call('HeapProfiler.disable').catch(() => {})
    const byFn = new Map()
    let total = 0
    const walk = (node) => {
      const self = node.selfSize ?? 0
      if (self > 0) {
        const f = node.callFrame
        const key = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}`
        byFn.set(key, (byFn.get(key) ?? 0) + self)
        total += self
      }
      for (const c of node.children ?? []) walk(c)
    }
    walk(profile.head)
    return { total, top: [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([fn, bytes]) => ({ fn, bytes })) }
  }

  close () { this.#ws.terminate() }
}
