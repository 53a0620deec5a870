import { UnavailableError, wireCode } from '../errors.js'
import type { HubPorts } from './context.js'

/**
 * Wraps a port so that any rejection of its methods becomes the protocol's
 * `unavailable` error (the original is kept as `cause` and handed to
 * `onError`): a failing store is a dependency failure, not a bug of the
 * server. `close` is passed through unchanged. Wrapped methods are made once.
 */
export function guardPort<T extends object> (port: T, name: string, onError?: (err: unknown) => void): T {
  const wrapped = new Map<PropertyKey, unknown>()
  return new Proxy(port, {
    get (target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function' || property === 'close') return value
      let fn = wrapped.get(property)
      if (fn === undefined) {
        fn = async (...args: unknown[]): Promise<unknown> => {
          try {
            return await (Reflect.apply(value, target, args) as Promise<unknown>)
          } catch (err) {
            if (wireCode(err) !== null) throw err
            onError?.(err)
            throw new UnavailableError(`${name} is unavailable; try again`, { cause: err })
          }
        }
        wrapped.set(property, fn)
      }
      return fn
    }
  })
}

/** Names of the ports in messages. */
const PORT_NAMES: Readonly<Record<keyof HubPorts, string>> = {
  sessions: 'the session store',
  broadcaster: 'the broadcaster',
  log: 'the op log',
  snapshots: 'the snapshot store'
}

/** The hub's ports, each guarded; `failed` is told of each failure with the port's key. */
export function guardPorts (ports: HubPorts, failed: (port: keyof HubPorts, err: unknown) => void): HubPorts {
  return {
    sessions: guardPort(ports.sessions, PORT_NAMES.sessions, (err) => { failed('sessions', err) }),
    broadcaster: guardPort(ports.broadcaster, PORT_NAMES.broadcaster, (err) => { failed('broadcaster', err) }),
    log: guardPort(ports.log, PORT_NAMES.log, (err) => { failed('log', err) }),
    snapshots: guardPort(ports.snapshots, PORT_NAMES.snapshots, (err) => { failed('snapshots', err) })
  }
}
