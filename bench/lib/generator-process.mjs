// A generator in several processes: each child process (this file, forked)
// holds a share of the clients in a Generator of its own (worker threads),
// so that the clients' sockets are spread over several processes' open-files
// limits. Only what the idle-connections bench needs: connect and close.
//
// Parent side: `ProcessGenerator` (same connect/close as Generator).
// Child side: this file run with `fork`, driven by IPC messages.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Generator } from './generator.mjs'

const SELF = fileURLToPath(import.meta.url)

export class ProcessGenerator {
  /**
   * @param {object} o as Generator's, plus
   * @param {number} o.processes child processes (clients dealt round robin)
   * @param {number} [o.workers] worker threads per child process
   */
  constructor ({ driver, clients, members, processes, workers = 1 }) {
    this.children = []
    for (let p = 0; p < processes; p++) {
      const share = clients.filter((_, i) => i % processes === p)
      const child = fork(SELF, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      child.send({ cmd: 'init', driver, clients: share, members, workers })
      this.children.push(child)
    }
  }

  #ask (child, message, evt, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`generator process did not answer ${message.cmd} in ${timeoutMs} ms`)) }, timeoutMs)
      const onMessage = (m) => {
        if (m.evt === 'error') { cleanup(); reject(new Error(m.message)) } else if (m.evt === evt) { cleanup(); resolve(m) }
      }
      const onExit = (code) => { cleanup(); reject(new Error(`generator process exited (${code}) during ${message.cmd}`)) }
      const cleanup = () => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
      child.on('message', onMessage)
      child.on('exit', onExit)
      child.send(message)
    })
  }

  /** Connects every client: `perSecond` in all, at most `concurrency` at once per worker thread. */
  async connect ({ perSecond = 1000, concurrency = 100, timeoutMs = 600_000 } = {}) {
    const n = this.children.length
    const replies = await Promise.all(this.children.map((c) =>
      this.#ask(c, { cmd: 'connect', perSecond: perSecond / n, concurrency, timeoutMs }, 'connected', timeoutMs + 10_000)))
    const reasons = {}
    for (const r of replies) for (const [k, v] of Object.entries(r.result.reasons)) reasons[k] = (reasons[k] ?? 0) + v
    return {
      connected: replies.reduce((s, r) => s + r.result.connected, 0),
      failed: replies.reduce((s, r) => s + r.result.failed, 0),
      retried: replies.reduce((s, r) => s + r.result.retried, 0),
      reasons,
      ms: Math.max(...replies.map((r) => r.result.ms))
    }
  }

  async close () {
    await Promise.all(this.children.map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return
      const exited = new Promise((resolve) => { c.once('exit', resolve) })
      await this.#ask(c, { cmd: 'close' }, 'closed', 20_000).catch(() => {})
      const timer = setTimeout(() => { c.kill('SIGKILL') }, 5000)
      c.disconnect()
      await exited
      clearTimeout(timer)
    }))
  }
}

if (process.argv[1] === SELF && process.send !== undefined) {
  let generator = null
  let closing = null
  const closeOnce = () => (closing ??= generator === null ? Promise.resolve() : generator.close())
  const reply = (evt, body) => { process.send({ evt, ...body }) }
  process.on('message', (msg) => {
    const fail = (err) => { reply('error', { message: err.stack ?? String(err) }) }
    switch (msg.cmd) {
      case 'init':
        generator = new Generator({ driver: msg.driver, clients: msg.clients, members: msg.members, workers: msg.workers })
        return
      case 'connect':
        generator.connect({ perSecond: msg.perSecond, concurrency: msg.concurrency, timeoutMs: msg.timeoutMs })
          .then((result) => reply('connected', { result }), fail)
        return
      case 'close':
        closeOnce().then(() => reply('closed', {}), fail)
    }
  })
  // The parent went away: close the clients and leave.
  process.on('disconnect', () => { closeOnce().finally(() => process.exit(0)) })
}
