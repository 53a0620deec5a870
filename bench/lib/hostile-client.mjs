// The hostile tenant's main-thread side: starts it (hostile-worker.mjs), and
// stops it, with what each of its lanes achieved.
//
// By default it runs as a process of its own at the lowest priority (nice
// 19), standing in for a client on another machine: on a 2-core box that
// also runs the servers and the members' generator, the CPU the hostile
// client spends on its own side (sending, parsing, HTTP) would otherwise be
// taken from the generator and the servers, and the members' latency would
// measure the box, not the server's bounds. `sched: 'idle'` (the default
// where `chrt` exists) runs it under SCHED_IDLE, below every nice level: it
// gets only CPU that nobody else wants, as a client on its own machine takes
// none of ours (what it still costs the server, its sockets and requests, is
// the server's to bear); the bench reports what it achieved, so a reader sees
// whether it was starved. `sched: 'nice'` keeps only the nice level, and
// `nice: null` runs it as a worker thread of the generator (the earlier
// methods).
import { execFileSync, fork } from 'node:child_process'
import os from 'node:os'
import { Worker } from 'node:worker_threads'

const WORKER = new URL('./hostile-worker.mjs', import.meta.url)

export const HOSTILE_CLIENT_DEFAULTS = {
  projects: 20, // its big projects
  opBytes: 63_000, // padding of each op: a frame just under the 64 KiB payload limit
  writes: 200, // big ops per second, round robin over its projects (one WebSocket)
  writesInFlight: 64, // unacked big ops at most
  reads: 20, // GET .../ops?since=0&limit=1000 per second: half on its big projects, half on projects that do not exist
  posts: 300, // POSTs per second, each to a new project
  postBytes: 1024, // padding of each POSTed op
  joins: 2, // fresh connections per second joining a big project with since: 0
  syncers: 4, // connections looping sync since: 0
  localAddress: '127.0.0.2', // where it connects from (the members: 127.0.0.1)
  nice: 19, // its process's priority; null: a worker thread of the generator
  sched: hasChrt() ? 'idle' : 'nice' // 'idle': SCHED_IDLE (chrt --idle), all its threads; 'nice': the nice level only
}

function hasChrt () {
  try {
    execFileSync('chrt', ['--help'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export class HostileClient {
  /**
   * @param {object} o HOSTILE_CLIENT_DEFAULTS, plus `ports` (the instances'
   *   HTTP ports, spread over) and `tag` (prefix of its project ids)
   */
  constructor (o) {
    this.options = { ...HOSTILE_CLIENT_DEFAULTS, ...o }
    this.worker = null
    this.done = null
  }

  /** Starts every lane; resolves once the worker runs. */
  async start () {
    this.worker = this.options.nice === null
      ? new Worker(WORKER, { workerData: this.options })
      : childWorker(this.options)
    const worker = this.worker
    this.done = new Promise((resolve, reject) => {
      worker.on('message', (m) => {
        if (m.evt === 'stopped') resolve(m.result)
        else if (m.evt === 'error') reject(new Error(m.message))
      })
      worker.on('error', reject)
      worker.on('exit', (code) => { reject(new Error(`hostile worker exited (${code}) before it stopped`)) })
    })
    await new Promise((resolve, reject) => {
      const onMessage = (m) => { if (m.evt === 'started') { worker.off('message', onMessage); resolve() } }
      worker.on('message', onMessage)
      this.done.catch(reject)
      worker.postMessage({ cmd: 'start' })
    })
  }

  /** Stops every lane (sockets cut, requests aborted); resolves the counters. */
  async stop (timeoutMs = 10_000) {
    if (this.worker === null) return null
    this.worker.postMessage({ cmd: 'stop' })
    let timer
    try {
      return await Promise.race([this.done, new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`hostile worker did not stop in ${timeoutMs} ms`)), timeoutMs)
      })])
    } finally {
      clearTimeout(timer)
      await this.worker.terminate()
      this.worker = null
    }
  }
}

/**
 * The hostile client as a process at priority `o.nice`, with a worker's
 * face (postMessage, on, off, terminate) over its IPC channel.
 */
function childWorker (o) {
  // Under SCHED_IDLE from its first instruction: chrt execs node, so every thread node starts inherits it.
  const child = fork(WORKER, [], {
    env: { ...process.env, FLOW_HOSTILE_OPTIONS: JSON.stringify(o) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    ...(o.sched === 'idle' ? { execPath: 'chrt', execArgv: ['--idle', '0', process.execPath] } : {})
  })
  child.once('spawn', () => {
    try { os.setPriority(child.pid, o.nice) } catch (err) { process.stderr.write(`hostile: cannot set priority ${o.nice}: ${err.message}\n`) }
  })
  return {
    postMessage: (m) => { child.send(m) },
    on: (event, listener) => { child.on(event, listener) },
    off: (event, listener) => { child.off(event, listener) },
    terminate: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((resolve) => { child.once('exit', resolve) })
      child.kill('SIGKILL')
      await exited
    }
  }
}
