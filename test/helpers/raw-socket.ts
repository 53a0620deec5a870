/**
 * A WebSocket client on a bare TCP socket, for tests that must control what
 * the client reads and writes byte by byte: stop reading, read slowly, send
 * a frame header that announces more than it will ever send, or keep
 * writing while the server closes. `ws` cannot do that (it always reads and
 * queues whole frames).
 */
import { connect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import { withDeadline } from './wait.js'

/** One frame from the server, as it came. */
export interface ServerFrame {
  readonly opcode: number
  readonly payload: Buffer
}

/** The close code of a close frame, or null when it carries none. */
export function closeCode (frame: ServerFrame): number | null {
  return frame.opcode === 0x8 && frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : null
}

/**
 * The header of a client frame (final, masked with a zero key, so the
 * payload bytes go on the wire as they are) announcing `length` bytes.
 */
export function frameHeader (opcode: number, length: number): Buffer {
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10
  const header = Buffer.alloc(size + 4)
  header[0] = 0x80 | opcode
  if (size === 2) {
    header[1] = 0x80 | length
  } else if (size === 4) {
    header[1] = 0x80 | 126
    header.writeUInt16BE(length, 2)
  } else {
    header[1] = 0x80 | 127
    header.writeUInt32BE(Math.floor(length / 2 ** 32), 2)
    header.writeUInt32BE(length >>> 0, 6)
  }
  // The last 4 bytes are the masking key: zero.
  return header
}

/** A complete client text frame. */
export function textFrame (text: string | object): Buffer {
  const payload = Buffer.from(typeof text === 'string' ? text : JSON.stringify(text))
  return Buffer.concat([frameHeader(0x1, payload.length), payload])
}

/** Parses the server's frames out of the bytes pushed in, in order. */
export class FrameReader {
  readonly frames: ServerFrame[] = []
  /** bytes pushed so far */
  bytes = 0
  #pending: Buffer = Buffer.alloc(0)

  push (chunk: Buffer): void {
    this.bytes += chunk.length
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk])
    for (;;) {
      const buf = this.#pending
      if (buf.length < 2) return
      let length = (buf[1] as number) & 0x7f
      let offset = 2
      if (length === 126) {
        if (buf.length < 4) return
        length = buf.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (buf.length < 10) return
        length = buf.readUInt32BE(2) * 2 ** 32 + buf.readUInt32BE(6)
        offset = 10
      }
      if (buf.length < offset + length) return
      this.frames.push({ opcode: (buf[0] as number) & 0x0f, payload: buf.subarray(offset, offset + length) })
      this.#pending = buf.subarray(offset + length)
    }
  }

  /** The close frame received, if any. */
  get close (): ServerFrame | undefined {
    return this.frames.find((f) => f.opcode === 0x8)
  }

  /** The text frames received, parsed as JSON. */
  json (): Array<Record<string, unknown>> {
    return this.frames.filter((f) => f.opcode === 0x1).map((f) => JSON.parse(f.payload.toString('utf8')) as Record<string, unknown>)
  }
}

export interface RawOptions {
  /** keep the socket's sending side open when the server ends its own (default false, as Node's) */
  readonly allowHalfOpen?: boolean
}

/**
 * Opens a WebSocket connection to `url` (ws://) on a bare TCP socket and
 * resolves it once the server answered 101, paused: nothing more is read
 * until the test reads. Bytes that came with the 101 are unshifted back.
 * Destroyed at the end of `t`.
 */
export async function rawConnect (t: Test, url: string, options: RawOptions = {}): Promise<Socket> {
  const { hostname, port, pathname, search } = new URL(url)
  const socket = connect({ port: Number(port), host: hostname, allowHalfOpen: options.allowHalfOpen ?? false })
  t.teardown(() => { socket.destroy() })
  socket.on('error', () => {})
  const key = randomBytes(16).toString('base64')
  socket.write(`GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  await withDeadline(new Promise<void>((resolve, reject) => {
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      socket.pause()
      const status = head.subarray(0, head.indexOf('\r\n')).toString()
      if (!status.includes(' 101 ')) {
        reject(new Error(`upgrade refused: ${status}`))
        return
      }
      const rest = head.subarray(end + 4)
      if (rest.length > 0) socket.unshift(rest)
      resolve()
    }
    socket.on('data', onData)
    socket.once('close', () => { reject(new Error('closed during the upgrade')) })
  }), 'the upgrade')
  return socket
}

/**
 * Reads `socket` (paused) at about `bytesPerSecond`, in steps of 10 ms,
 * into `reader`, until the socket ends or closes. Resolves how it ended.
 */
export async function readSlowly (socket: Socket, reader: FrameReader, bytesPerSecond: number): Promise<'end' | 'close'> {
  const perStep = Math.max(1, Math.round(bytesPerSecond / 100))
  return await new Promise((resolve) => {
    const step = (): void => {
      let budget = perStep
      while (budget > 0) {
        const available = socket.readableLength
        if (available === 0) {
          // Ask the socket for more; it reads from the kernel up to its high-water mark.
          socket.read(0)
          break
        }
        const chunk = socket.read(Math.min(budget, available)) as Buffer | null
        if (chunk === null) break
        budget -= chunk.length
        reader.push(chunk)
      }
    }
    // A load generator paced by a timer, not a wait: the test awaits what the reader finds.
    const timer = setInterval(step, 10)
    const done = (how: 'end' | 'close'): void => {
      clearInterval(timer)
      // What is left in the socket's buffer after an end.
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) reader.push(chunk)
      resolve(how)
    }
    socket.once('end', () => { done('end') })
    socket.once('close', () => { done('close') })
    step()
  })
}
